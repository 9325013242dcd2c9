// The SDK in a real browser (headless Chromium) against a real engine: the browser's own
// WebSocket, join, chat, a SIGTERM restart of the engine (1012) with a resume, a claim, close().
//
// Skipped when there is no engine binary or no Chromium (`CHROMIUM`, else chromium,
// chromium-browser or google-chrome on the PATH).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Engine, engineBinary, until } from "./support/engine.js";

const sdkPath = join(dirname(fileURLToPath(import.meta.url)), "../liveshop.js");

function findChromium() {
  const names = [process.env.CHROMIUM, "chromium", "chromium-browser", "google-chrome"].filter(Boolean);
  for (const name of names) {
    const r = spawnSync(name, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return name;
  }
  return null;
}

const chromium = findChromium();
const skip = !engineBinary() ? "no engine binary: build it or set LIVESHOP_BIN" : !chromium ? "no Chromium" : false;

// The page: it reports each step to the test server and waits for the test's go-ahead.
const page = `<!doctype html><meta charset="utf-8"><title>sdk</title><script type="module">
import { connect } from "/liveshop.js";
const cfg = await (await fetch("/config")).json();
const report = (step, data) => fetch("/step", { method: "POST", body: JSON.stringify({ step, ...data }) });
try {
  const states = [];
  const joins = [];
  const seqs = [];
  const closes = [];
  const client = connect({ url: cfg.origin, token: cfg.token });
  client.on("state", (s) => states.push(s));
  client.on("joined", (j) => joins.push({ epoch: j.epoch, seq: j.seq, resumed: j.resumed, ref: j.ref }));
  client.on("close", (c) => closes.push(c));
  const first = await client.join(cfg.stream, (ev) => { if (ev.seq) seqs.push(ev.seq); });
  const ok = await client.chat(cfg.stream, "hello from the browser");
  while (!seqs.includes(ok.seq)) await new Promise((r) => setTimeout(r, 10));
  await report("joined", { state: client.state, epoch: first.epoch, seq: ok.seq, session: client.welcome.session });
  // The test restarts the engine now.
  while (!(states.includes("reconnecting") && client.state === "live" && joins.length >= 2)) await new Promise((r) => setTimeout(r, 20));
  const again = await client.chat(cfg.stream, "after the restart");
  while (!seqs.includes(again.seq)) await new Promise((r) => setTimeout(r, 10));
  const claim = await client.claim(cfg.drop, 1);
  let bidError = null;
  try { await client.bid("auc_1", 100); } catch (e) { bidError = { code: e.code, type: e.type, isError: e instanceof Error }; }
  await client.close();
  await report("done", { states, joins, seqs, closes, claim, bidError, position: client.position(cfg.stream) });
} catch (e) {
  await report("failed", { error: String(e && (e.stack || e.message || e.code)) });
}
</script>`;

let engine;
let server;
let browser;
let profile;
const steps = [];
let config = {};

before(async () => {
  if (skip) return;
  engine = await new Engine().start();
  server = createServer((req, res) => {
    if (req.url === "/liveshop.js") {
      res.setHeader("content-type", "text/javascript");
      return res.end(readFileSync(sdkPath));
    }
    if (req.url === "/config") {
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify(config));
    }
    if (req.url === "/step") {
      let body = "";
      req.on("data", (c) => { body += c; });
      req.on("end", () => { steps.push(JSON.parse(body)); res.end(); });
      return undefined;
    }
    if (req.url === "/") {
      res.setHeader("content-type", "text/html");
      return res.end(page);
    }
    res.statusCode = 404;
    return res.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
});

after(async () => {
  if (browser) {
    try { process.kill(-browser.pid, "SIGKILL"); } catch { /* gone */ }
  }
  if (server) server.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (engine) await engine.dispose();
});

test("in Chromium, the SDK joins, chats, survives an engine restart (1012) with a re-join, claims and closes", { timeout: 120_000, skip }, async () => {
  const s = await engine.setup();
  const drop = await engine.api("POST", `/v1/streams/${s.stream}/drops`, s.seller, { product: s.product, quantity: 5 });
  config = { origin: engine.origin, token: engine.token({ role: "viewer", tid: s.tenant, sub: "dora", name: "Dora" }), stream: s.stream, drop: drop.id };
  profile = mkdtempSync(join(tmpdir(), "liveshop-chromium-"));
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  browser = spawn(chromium, ["--headless=new", "--no-sandbox", "--disable-gpu", `--user-data-dir=${profile}`, pageUrl], { detached: true, stdio: "ignore" });
  const stepNamed = (name) => steps.find((x) => x.step === name || x.step === "failed");
  await until(() => stepNamed("joined"), { timeout: 60_000, what: "the page's join" });
  assert.equal(stepNamed("joined").step, "joined", JSON.stringify(steps));
  const joined = stepNamed("joined");
  assert.equal(joined.state, "live");
  await engine.restart();
  await until(() => stepNamed("done"), { timeout: 60_000, what: "the page's end" });
  const done = stepNamed("done");
  assert.equal(done.step, "done", JSON.stringify(done));
  assert.deepEqual(done.states, ["live", "reconnecting", "live", "closed"]);
  assert.equal(done.closes[0].code, 1012);
  assert.equal(done.closes[0].reason, "restarting");
  assert.equal(done.joins.length, 2);
  assert.equal(done.joins[1].resumed, false, "an engine restart begins a new epoch: a snapshot");
  assert.ok(done.joins[1].epoch > joined.epoch);
  assert.equal(done.seqs[0], joined.seq);
  assert.equal(done.seqs[done.seqs.length - 1], done.position.seq);
  assert.equal(done.claim.status, "reserved");
  assert.equal(done.claim.user, "dora");
  assert.deepEqual(done.bidError, { code: "bad_frame", type: "error", isError: true });
  const mine = await engine.api("GET", "/v1/claims", config.token);
  assert.deepEqual(mine.items.map((c) => c.id), [done.claim.id]);
});
