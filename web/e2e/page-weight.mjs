// Measures a cold `/watch/{stream}`: every byte it loads (each response's body size, as
// served, and gzipped for comparison) and how long after navigation starts the stream's first
// state is on screen (the pinned product of the snapshot), over RUNS cold loads, each in a fresh
// browser context (empty cache). Prints one JSON object.
//
//   cd web/e2e && npm ci && LIVESHOP_BIN=../../target/release/liveshop RUNS=5 node page-weight.mjs

import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { Engine } from "../sdk/test/support/engine.js";

const RUNS = Number(process.env.RUNS || 5);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const engine = await new Engine().start();
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
try {
  const op = engine.token({ role: "operator", sub: "ops" });
  const tenant = await engine.api("POST", "/v1/tenants", op, { slug: "weight", name: "Weight" });
  const seller = engine.token({ role: "seller", tid: tenant.id, sub: "seller-1", name: "Seller" });
  const product = await engine.api("POST", "/v1/products", seller, {
    sku: "SKU-W", title: "Blue sneaker", price_cents: 4990, currency: "EUR",
  });
  const stream = await engine.api("POST", "/v1/streams", seller, { title: "Weight" });
  await engine.api("POST", `/v1/streams/${stream.id}/start`, seller);
  await engine.api("POST", `/v1/streams/${stream.id}/pin`, seller, { product: product.id });
  const viewer = engine.token({ role: "viewer", tid: tenant.id, sub: "viewer-1", name: "Viewer" });

  const loads = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const files = [];
    page.on("response", async (response) => {
      const url = new URL(response.url());
      if (url.protocol !== "http:") return;
      const body = await response.body().catch(() => Buffer.alloc(0));
      files.push({ path: url.pathname, bytes: body.length, gzip: gzipSync(body).length });
    });
    const started = Date.now();
    await page.goto(`${engine.origin}/watch/${stream.id}#token=${viewer}`);
    await page.locator('[data-testid="pinned-product"]').filter({ hasText: "Blue sneaker" }).waitFor();
    const onScreenMs = Date.now() - started;
    await page.waitForLoadState("networkidle");
    loads.push({ onScreenMs, files });
    await context.close();
  }
  const first = loads[0].files;
  console.log(JSON.stringify({
    files: first.map((f) => `${f.path} ${f.bytes} B (gzip ${f.gzip} B)`),
    bytes: first.reduce((n, f) => n + f.bytes, 0),
    gzipBytes: first.reduce((n, f) => n + f.gzip, 0),
    onScreenMs: loads.map((l) => l.onScreenMs),
  }, null, 2));
} finally {
  await browser.close();
  await engine.dispose();
}
