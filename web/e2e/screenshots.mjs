// Takes the screenshots of docs/screenshots/: each page at phone (390 px) and desktop (1280 px)
// width, with a demo show that has chat, a reserved claim and a sold-out drop; and the studio's
// moderation part after chat settings, a deleted message and a mute.
//
// Against a running dev-mode engine: `LIVESHOP_ORIGIN=http://127.0.0.1:8080 node screenshots.mjs`;
// without LIVESHOP_ORIGIN it starts target/debug/liveshop (or LIVESHOP_BIN) itself.

import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Engine } from "../sdk/test/support/engine.js";

const out = resolve(dirname(fileURLToPath(import.meta.url)), "../../docs/screenshots");
mkdirSync(out, { recursive: true });
const engine = process.env.LIVESHOP_ORIGIN ? null : await new Engine().start();
const origin = process.env.LIVESHOP_ORIGIN || engine.origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const t = (page, id) => page.locator(`[data-testid="${id}"]`);

try {
  const landing = await (await browser.newContext()).newPage();
  await landing.goto(`${origin}/`, { waitUntil: "networkidle" });
  await landing.locator("#demo-button").click();
  await landing.locator("#demo-links").waitFor();
  const link = async (id) => origin + (await landing.locator(`#${id}`).getAttribute("href"));
  const links = {
    studio: await link("demo-studio"),
    viewer: await link("demo-viewer"),
    viewer2: await link("demo-viewer2"),
    ops: await link("demo-ops"),
  };

  const studio = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await studio.goto(links.studio);
  await studio.locator("#stream-status").filter({ hasText: "live" }).waitFor();
  const viewer = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  await viewer.goto(links.viewer);
  await t(viewer, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  for (const text of ["Hi! Is the blue one still there?", "Just joined, hello!"]) {
    await t(viewer, "chat-input").fill(text);
    await t(viewer, "chat-send").click();
  }
  await t(studio, "drop-quantity").fill("5");
  await t(studio, "drop-open").click();
  await t(viewer, "drop-remaining").filter({ hasText: /^5$/ }).waitFor();
  await t(viewer, "claim-button").click();
  await t(viewer, "claim-status").filter({ hasText: "reserved" }).waitFor();
  await t(viewer, "react-heart").click();
  await viewer.waitForTimeout(1200);

  const shoot = async (page, name) => {
    for (const [label, width] of [["phone", 390], ["desktop", 1280]]) {
      await page.setViewportSize({ width, height: label === "phone" ? 844 : 900 });
      await page.waitForTimeout(300);
      await page.screenshot({ path: `${out}/${name}-${label}.png`, fullPage: true });
    }
  };
  await shoot(viewer, "watch");

  // Moderation: a deleted message, a mute and chat settings, then the studio's moderation part.
  const viewer2 = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  await viewer2.goto(links.viewer2);
  await t(viewer2, "connection-state").filter({ hasText: /^live$/ }).waitFor();
  const message = (text) => t(studio, "moderation-message").filter({ hasText: text });
  for (const text of ["Cheap copies at my shop, DM me", "Why was that deleted?"]) {
    await t(viewer2, "chat-input").fill(text);
    await t(viewer2, "chat-send").click();
    await message(text).waitFor();
    if (text.startsWith("Cheap")) {
      await message(text).locator('[data-testid="delete-message"]').click();
      await message(text).waitFor({ state: "detached" });
    }
  }
  await t(studio, "mute-seconds").fill("600");
  await message("Why was that deleted?").locator('[data-testid="mute-user"]').click();
  await t(studio, "moderation-status").filter({ hasText: "Muted" }).waitFor();
  await t(studio, "moderation-log-entry").filter({ hasText: "muted" }).waitFor();
  await t(studio, "blocked-words").fill("fake link\nspam");
  await t(studio, "slow-mode-seconds").fill("5");
  await t(studio, "chat-settings-save").click();
  await t(studio, "moderation-log-entry").filter({ hasText: "changed the chat settings" }).waitFor();
  await studio.setViewportSize({ width: 1280, height: 900 });
  await studio.waitForTimeout(300);
  await studio.locator("#moderation-panel").locator("xpath=..")
    .screenshot({ path: `${out}/studio-moderation-desktop.png` });
  await shoot(studio, "studio");
  const ops = await (await browser.newContext()).newPage();
  await ops.goto(links.ops);
  await ops.waitForTimeout(7000);
  await shoot(ops, "ops");
  await shoot(landing, "landing");
  console.log(`screenshots written to ${out}`);
} finally {
  await browser.close();
  if (engine) await engine.dispose();
}
