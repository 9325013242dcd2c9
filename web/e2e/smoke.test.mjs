// Headless-browser smoke tests of the engine's pages: each page loads with no console error and
// no request to another origin; a viewer joins a live show, chats and sees its message, claims
// the last unit and sees `reserved`, a second viewer gets "Sold out", and both pages come back
// by themselves after the engine restarts; a seller runs a whole show from the studio's forms
// while a viewer chats, reacts and claims and the ops page counts the connections; the landing
// page's demo opens studio and viewer.
//
// Needs a built engine (target/debug/liveshop or LIVESHOP_BIN) and Debian's chromium
// (CHROMIUM, default /usr/bin/chromium). Run: `cd web/e2e && npm ci && npm test`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { axeProblems, byId, harness, shop as makeShop, skip, watchedPage as openPage } from "./support.mjs";

const h = harness();
const watchedPage = () => openPage(h);
const shop = () => makeShop(h.engine);

test("every page loads with no console error and nothing from another origin", { skip }, async () => {
  for (const path of ["/", "/studio", "/ops", "/watch/str_none"]) {
    const { context, page, problems } = await watchedPage();
    const answer = await page.goto(h.engine.origin + path, { waitUntil: "networkidle" });
    assert.equal(answer.status(), 200, path);
    await page.waitForTimeout(300);
    assert.deepEqual(problems, [], `${path}: ${problems.join("; ")}`);
    assert.deepEqual(await axeProblems(page), [], `${path} accessibility`);
    await context.close();
  }
});

test("signed-in studio and ops pages load with no console error", { skip }, async () => {
  const s = await shop();
  for (const [path, token] of [["/studio", s.seller], ["/ops", s.op], ["/", s.viewer("v-landing")]]) {
    const { context, page, problems } = await watchedPage();
    await page.goto(`${h.engine.origin}${path}#token=${encodeURIComponent(token)}`, { waitUntil: "networkidle" });
    assert.equal(new URL(page.url()).hash, "", `${path} keeps the token out of the address bar`);
    await page.waitForTimeout(500);
    if (path === "/studio") {
      await page.locator("#stream-status").filter({ hasText: "live" }).waitFor();
    }
    if (path === "/ops") {
      await page.locator("#node-rows tr").first().waitFor();
      assert.match(await byId(page, "ops-connections").textContent(), /^\d+$/);
    }
    assert.deepEqual(problems, [], `${path}: ${problems.join("; ")}`);
    assert.deepEqual(await axeProblems(page), [], `${path} accessibility`);
    await context.close();
  }
});

test("a viewer joins, chats, claims the last unit; a second gets Sold out; both resume after a restart", { skip }, async () => {
  const s = await shop();
  const a = await watchedPage();
  await a.page.goto(`${h.engine.origin}/watch/${s.stream.id}#token=${encodeURIComponent(s.viewer("alice"))}`);
  await byId(a.page, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  await byId(a.page, "pinned-product").filter({ hasText: "Blue sneaker" }).waitFor();

  await byId(a.page, "chat-input").fill("hello from the browser");
  await byId(a.page, "chat-send").click();
  await byId(a.page, "chat-message").filter({ hasText: "hello from the browser" }).waitFor();

  await h.engine.api("POST", `/v1/streams/${s.stream.id}/drops`, s.seller, { product: s.product.id, quantity: 1 });
  await byId(a.page, "drop-remaining").filter({ hasText: /^1$/ }).waitFor();
  await byId(a.page, "claim-button").click();
  await byId(a.page, "claim-status").filter({ hasText: "reserved" }).waitFor();
  assert.deepEqual(await axeProblems(a.page), [], "viewer accessibility");

  const b = await watchedPage();
  await b.page.goto(`${h.engine.origin}/watch/${s.stream.id}#token=${encodeURIComponent(s.viewer("bob"))}`);
  await byId(b.page, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  await byId(b.page, "drop-remaining").filter({ hasText: /^0$/ }).waitFor();
  await byId(b.page, "claim-button").click();
  await byId(b.page, "error-banner").filter({ hasText: "Sold out" }).waitFor();

  await h.engine.stop();
  await byId(a.page, "connection-state").filter({ hasText: "reconnecting" }).waitFor();
  await h.engine.start();
  for (const p of [a.page, b.page]) {
    await byId(p, "connection-state").filter({ hasText: "resumed" }).waitFor({ timeout: 30_000 });
  }
  await byId(a.page, "chat-input").fill("still here");
  await byId(a.page, "chat-send").click();
  await byId(b.page, "chat-message").filter({ hasText: "still here" }).waitFor();

  const ignorable = (p) => /WebSocket connection to .* failed/.test(p) || /ERR_CONNECTION_REFUSED/.test(p);
  assert.deepEqual(a.problems.filter((p) => !ignorable(p)), []);
  assert.deepEqual(b.problems.filter((p) => !ignorable(p)), []);
  await a.context.close();
  await b.context.close();
});

test("a seller runs a show from the studio alone; a viewer claims; ops sees the connections", { skip }, async () => {
  const op = h.engine.token({ role: "operator", sub: "ops" });
  const slug = `e2e-${Math.random().toString(36).slice(2, 8)}`;
  const tenant = await h.engine.api("POST", "/v1/tenants", op, { slug, name: "E2E studio shop" });
  const sellerToken = h.engine.token({ role: "seller", tid: tenant.id, sub: "seller-1", name: "Seller" });

  const studio = await watchedPage();
  const s = studio.page;
  await s.goto(`${h.engine.origin}/studio`);
  await s.locator("#signin-token").fill(sellerToken);
  await s.locator("#signin-form button[type=submit]").click();
  await s.locator("#studio-connection").filter({ hasText: /^live$/ }).waitFor();

  await byId(s, "product-sku").fill(`SKU-${slug}`);
  await byId(s, "product-title").fill("Red scarf");
  await byId(s, "product-price").fill("19.90");
  await byId(s, "product-currency").fill("EUR");
  await byId(s, "product-create").click();
  await s.locator("#product-rows tr").filter({ hasText: "Red scarf" }).waitFor();

  await byId(s, "stream-title").fill("Studio show");
  await byId(s, "stream-create").click();
  await s.locator("#stream-status").filter({ hasText: /^scheduled$/ }).waitFor();
  const streamId = decodeURIComponent((await s.locator("#stream-watch").getAttribute("href")).split("/").pop());
  await byId(s, "stream-go-live").click();
  await s.locator("#stream-status").filter({ hasText: /^live$/ }).waitFor();

  const label = `Red scarf (SKU-${slug})`;
  await byId(s, "pin-product").selectOption({ label });
  await byId(s, "pin-button").click();
  await s.locator("#pinned-now").filter({ hasText: "Red scarf" }).waitFor();
  await byId(s, "drop-product").selectOption({ label });
  await byId(s, "drop-quantity").fill("1");
  await byId(s, "drop-open").click();
  await s.locator("#drop-now").filter({ hasText: "1 of 1 left" }).waitFor();

  const viewer = await watchedPage();
  const v = viewer.page;
  const viewerToken = h.engine.token({ role: "viewer", tid: tenant.id, sub: "carol", name: "carol" });
  await v.goto(`${h.engine.origin}/watch/${streamId}#token=${encodeURIComponent(viewerToken)}`);
  await byId(v, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  await byId(v, "pinned-product").filter({ hasText: "Red scarf" }).waitFor();
  await byId(v, "drop-card").filter({ hasText: "Red scarf" }).waitFor();
  await byId(v, "drop-remaining").filter({ hasText: /^1$/ }).waitFor();

  await byId(v, "chat-input").fill("hi from the studio test");
  await byId(v, "chat-send").click();
  await byId(v, "chat-message").filter({ hasText: "hi from the studio test" }).waitFor();
  await byId(v, "react-heart").click();
  await v.locator("#reaction-total").filter({ hasText: /♥ [1-9]/ }).waitFor();
  await byId(v, "claim-button").click();
  await byId(v, "claim-status").filter({ hasText: "reserved" }).waitFor();

  await byId(s, "stat-viewers").filter({ hasText: /^[1-9]\d*$/ }).waitFor();
  await byId(s, "stat-remaining").filter({ hasText: /^0$/ }).waitFor();
  await byId(s, "moderation-message").filter({ hasText: "hi from the studio test" }).waitFor();

  const ops = await watchedPage();
  await ops.page.goto(`${h.engine.origin}/ops#token=${encodeURIComponent(op)}`);
  // The studio and the viewer hold one connection each.
  await byId(ops.page, "ops-connections").filter({ hasText: /^([2-9]|\d{2,})$/ }).waitFor();

  assert.deepEqual(await axeProblems(s), [], "studio accessibility with a live show");
  for (const [name, w] of [["studio", studio], ["viewer", viewer], ["ops", ops]]) {
    assert.deepEqual(w.problems, [], `${name}: ${w.problems.join("; ")}`);
    await w.context.close();
  }
});

test("the demo button opens a live studio and a viewer", { skip }, async () => {
  const { context, page, problems } = await watchedPage();
  await page.goto(h.engine.origin + "/", { waitUntil: "networkidle" });
  const popups = [];
  context.on("page", (p) => popups.push(p));
  await page.locator("#demo-button").click();
  await page.locator("#demo-links").waitFor();
  assert.equal(popups.length, 2, "two windows open");
  const [studio, viewer] = popups;
  await studio.locator("#stream-status").filter({ hasText: "live" }).waitFor();
  await byId(viewer, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  await byId(viewer, "pinned-product").filter({ hasText: "Limited sneaker" }).waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});
