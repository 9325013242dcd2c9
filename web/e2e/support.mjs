// What the pages' browser tests share: one engine and one headless Chromium per test file,
// pages that record console errors and requests to another origin, a shop with a live show, the
// axe-core check, and locating elements by `data-testid`.

import { after, before } from "node:test";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { Engine, engineBinary } from "../sdk/test/support/engine.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** Why the browser tests cannot run here, or false. */
export const skip = !engineBinary()
  ? "no liveshop binary (build it or set LIVESHOP_BIN)"
  : !existsSync(CHROMIUM)
    ? `no chromium at ${CHROMIUM}`
    : false;

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * Starts an engine and a browser before the file's tests and stops them after; the returned
 * object's `engine` and `browser` are set once `before` ran.
 */
export function harness() {
  const h = { engine: null, browser: null };
  before(async () => {
    if (skip) return;
    h.engine = await new Engine().start();
    h.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  });
  after(async () => {
    if (h.browser) await h.browser.close();
    if (h.engine) await h.engine.dispose();
  });
  return h;
}

/**
 * A page in a fresh phone-sized context that records console errors, page errors, requests to
 * another origin, and any HTTP request whose URL carries a token.
 */
export async function watchedPage({ engine, browser }) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const problems = [];
  const origin = new URL(engine.origin).origin;
  const watch = (p) => {
    p.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
    p.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    p.on("request", (req) => {
      const url = new URL(req.url());
      if (url.protocol === "data:" || url.protocol === "blob:") return;
      if (url.origin !== origin) problems.push(`request to another origin: ${req.url()}`);
      if (/token=/.test(url.search)) problems.push(`token in an HTTP request URL: ${url.pathname}`);
    });
  };
  watch(page);
  context.on("page", watch);
  return { context, page, problems };
}

/** A tenant with a seller, a product and a live show with the product pinned. */
export async function shop(engine) {
  const op = engine.token({ role: "operator", sub: "ops" });
  const slug = `e2e-${Math.random().toString(36).slice(2, 8)}`;
  const tenant = await engine.api("POST", "/v1/tenants", op, { slug, name: "E2E shop" });
  const seller = engine.token({ role: "seller", tid: tenant.id, sub: "seller-1", name: "Seller" });
  const product = await engine.api("POST", "/v1/products", seller, {
    sku: `SKU-${slug}`, title: "Blue sneaker", price_cents: 4990, currency: "EUR",
  });
  const stream = await engine.api("POST", "/v1/streams", seller, { title: "E2E show" });
  await engine.api("POST", `/v1/streams/${stream.id}/start`, seller);
  await engine.api("POST", `/v1/streams/${stream.id}/pin`, seller, { product: product.id });
  const viewer = (sub) => engine.token({ role: "viewer", tid: tenant.id, sub, name: sub });
  return { tenant, seller, product, stream, viewer, op };
}

/** The serious and critical axe-core violations of the page as it is now. */
export async function axeProblems(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run());
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** The elements with this `data-testid`. */
export const byId = (page, id) => page.locator(`[data-testid="${id}"]`);
