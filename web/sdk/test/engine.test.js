// The SDK against a real engine process: join, chat and event order, each close code the engine
// can be made to send, resume after reconnects, stream restarts, and claim keys across a reconnect.
//
// Needs the engine binary (LIVESHOP_BIN, or target/debug/liveshop of the repository); without it
// these tests are skipped with that reason.

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { connect } from "../liveshop.js";
import { Engine, engineBinary, until } from "./support/engine.js";

const skip = engineBinary() ? false : "no engine binary: build it or set LIVESHOP_BIN";
const T = { timeout: 90_000, skip };

/** @type {Engine} */
let engine;

before(async () => {
  if (skip) return;
  engine = new Engine({
    LIVESHOP_ENABLE_FAULT_INJECTION: "1",
    // The slow-consumer test floods one stream; the smallest buffer makes it quick.
    LIVESHOP_BROADCAST_CAPACITY: "16",
    LIVESHOP_CHAT_BURST: "100000",
    LIVESHOP_CHAT_PER_SEC: "100000",
    LIVESHOP_FRAME_BURST: "100000",
    LIVESHOP_FRAMES_PER_SEC: "100000",
  });
  await engine.start();
});

after(async () => {
  if (engine) await engine.dispose();
});

/** Every client a test opened; closed after each test, so a failed test leaks no reconnect loop. */
const opened = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

/** A client on the engine with its states and closes recorded; `WS` replaces the ws class. */
function client(token, { WS = WebSocket, ...extra } = {}) {
  const c = connect({ url: engine.origin, token, WebSocket: WS, ...extra });
  opened.push(c);
  c.states = [];
  c.closes = [];
  c.frames = [];
  c.on("state", (s) => c.states.push(s));
  c.on("close", (i) => c.closes.push(i));
  c.on("frame", (f) => c.frames.push(f));
  return c;
}

/** A ws class that remembers its sockets. */
function trackedWS() {
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  return { Tracked, sockets };
}

const live = (c, what = "live") => until(() => c.state === "live", { timeout: 30_000, what });

test("a viewer joins, chats, and receives every chat event once, in seq order", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob", name: "Bob" }));
  const seller = client(s.seller);
  const events = [];
  const joined = await viewer.join(s.stream, (ev) => events.push(ev));
  assert.equal(viewer.state, "live");
  assert.deepEqual(viewer.states, ["live"]);
  assert.equal(viewer.frames[0].type, "welcome");
  assert.equal(viewer.welcome.user, "bob");
  assert.equal(joined.type, "joined");
  assert.equal(joined.resumed, false);
  assert.ok(joined.snapshot && Array.isArray(joined.snapshot.chat));
  const oks = await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => viewer.chat(s.stream, `v${i}`)),
    ...Array.from({ length: 10 }, (_, i) => seller.chat(s.stream, `s${i}`)),
  ]);
  for (const ok of oks) assert.equal(ok.type, "ok");
  const seqs = oks.map((o) => o.seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => joined.seq + 1 + i));
  await until(() => events.filter((e) => e.kind === "chat").length === 20, { what: "20 chat events" });
  const chats = events.filter((e) => e.kind === "chat");
  assert.deepEqual(chats.map((e) => e.seq), seqs, "every chat once, in seq order");
  const texts = chats.filter((e) => e.data.user.id === "bob").map((e) => e.data.text);
  assert.deepEqual(texts, Array.from({ length: 10 }, (_, i) => `v${i}`), "one connection's chats keep their order");
  assert.equal(chats.find((e) => e.data.user.id === "bob").data.user.name, "Bob");
  await viewer.close();
  await seller.close();
  assert.equal(viewer.state, "closed");
});

test("react resolves once the engine took it, and an unknown emoji rejects with its error frame", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }));
  const counts = [];
  await viewer.join(s.stream, (ev) => { if (ev.kind === "reactions") counts.push(ev.data.counts); });
  await Promise.all([viewer.react(s.stream, "heart"), viewer.react(s.stream, "heart"), viewer.react(s.stream, "fire")]);
  await assert.rejects(viewer.react(s.stream, "not-an-emoji"), (e) => e.type === "error" && e.code === "bad_request");
  await assert.rejects(viewer.react("str_missing", "heart"), (e) => e.code === "not_joined");
  await until(() => counts.reduce((n, c) => n + (c.heart || 0), 0) === 2, { what: "2 hearts counted" });
  await viewer.close();
});

test("errors reject with the engine's error frame: not_joined, not_found and bid (no auctions yet)", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }));
  await assert.rejects(viewer.chat(s.stream, "not joined"), (e) => e.code === "not_joined" && typeof e.message === "string");
  await assert.rejects(viewer.join("str_00000000000000000000000000000000"), (e) => e.code === "not_found");
  await assert.rejects(viewer.bid("auc_1", 1500), (e) => e.code === "bad_frame" && /unknown op/.test(e.message));
  assert.equal(viewer.state, "live", "refusals keep the connection");
  await viewer.close();
});

test("a session crash (1011) reconnects and resumes with exactly the missed events", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }), { random: () => 0.99 });
  const seller = client(s.seller);
  const seqs = [];
  const joins = [];
  viewer.on("joined", (j) => joins.push(j));
  await viewer.join(s.stream, (ev) => { if (ev.seq) seqs.push(ev.seq); });
  await seller.chat(s.stream, "before");
  await until(() => seqs.length === 1, { what: "first event" });
  const session = viewer.welcome.session;
  await engine.api("POST", `/v1/admin/sessions/${session}/crash`, s.operator);
  await until(() => viewer.state === "reconnecting", { what: "reconnecting" });
  // Sent while the viewer is away (its next attempt waits about half a second).
  const missed = [];
  for (let i = 0; i < 3; i++) missed.push((await seller.chat(s.stream, `missed ${i}`)).seq);
  await live(viewer);
  await until(() => seqs.length === 4, { what: "replayed events" });
  assert.deepEqual(viewer.closes.map((c) => c.code), [1011]);
  assert.deepEqual(viewer.states, ["live", "reconnecting", "live"]);
  assert.notEqual(viewer.welcome.session, session);
  const resume = joins[joins.length - 1];
  assert.equal(resume.resumed, true, `resume answered ${JSON.stringify(resume)}`);
  assert.equal(resume.snapshot, undefined);
  assert.deepEqual(seqs.slice(1), missed);
  const after = (await seller.chat(s.stream, "after")).seq;
  await until(() => seqs.length === 5, { what: "live event after resume" });
  assert.equal(seqs[4], after);
  assert.deepEqual(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2, seqs[0] + 3, seqs[0] + 4]);
  await viewer.close();
  await seller.close();
});

test("a stream crash sends an unsolicited joined in a new epoch and events go on from seq 1", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }));
  const seller = client(s.seller);
  const joins = [];
  const events = [];
  viewer.on("joined", (j) => joins.push(j));
  const first = await viewer.join(s.stream, (ev) => { if (ev.seq) events.push(ev); });
  await engine.api("POST", `/v1/admin/streams/${s.stream}/crash`, s.operator);
  await until(() => joins.length === 2, { what: "unsolicited joined" });
  const j = joins[1];
  assert.equal(j.ref, undefined);
  assert.equal(j.resumed, false);
  assert.ok(j.epoch > first.epoch, `epoch ${j.epoch} after ${first.epoch}`);
  assert.ok(j.snapshot);
  const ok = await seller.chat(s.stream, "after the crash");
  await until(() => events.length === 1, { what: "event of the new epoch" });
  assert.equal(events[0].seq, ok.seq);
  assert.equal(events[0].seq, j.seq + 1);
  assert.deepEqual(viewer.position(s.stream), { epoch: j.epoch, seq: ok.seq });
  assert.deepEqual(viewer.states, ["live"], "the connection stayed open");
  await viewer.close();
  await seller.close();
});

test("a token that expires closes the connection with 1008 and the client stops", T, async () => {
  const s = await engine.setup();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob", ttl: 2 }));
  await viewer.join(s.stream);
  await until(() => viewer.state === "closed", { timeout: 10_000, what: "closed" });
  assert.deepEqual(viewer.closes, [{ code: 1008, reason: "token_expired", reconnect: false }]);
  assert.deepEqual(viewer.states, ["live", "closed"]);
  await assert.rejects(viewer.chat(s.stream, "late"), (e) => e.code === "closed");
});

test("a token the engine refuses (another secret) ends in closed, not in endless retries", T, async () => {
  const s = await engine.setup();
  const bad = new Engine().token({ role: "viewer", tid: s.tenant, sub: "bob" });
  const { Tracked, sockets } = trackedWS();
  const viewer = client(bad, { WS: Tracked });
  await until(() => viewer.state === "closed", { what: "closed" });
  assert.equal(viewer.closes[0].code, 1008);
  assert.match(viewer.closes[0].reason, /401/);
  assert.equal(sockets.length, 1);
});

test("a claim whose reply was lost in a reconnect is sent again with its key: the engine keeps one claim", T, async () => {
  const s = await engine.setup();
  const drop = await engine.api("POST", `/v1/streams/${s.stream}/drops`, s.seller, { product: s.product, quantity: 10, per_user_limit: 5 });
  const buyer = engine.token({ role: "viewer", tid: s.tenant, sub: "carol" });
  // The first claim frame goes out, then the socket goes deaf (every frame it receives from then
  // on is lost, the claim's reply included) and dies half a second later, long after the engine
  // stored the claim.
  let cut = false;
  const sentClaims = [];
  class Cutting extends WebSocket {
    addEventListener(type, fn, ...rest) {
      super.addEventListener(type, type === "message" ? (ev) => { if (!this.deaf) fn(ev); } : fn, ...rest);
    }
    send(data, ...rest) {
      super.send(data, ...rest);
      const f = JSON.parse(data);
      if (f.op !== "claim") return;
      sentClaims.push(f);
      if (cut) return;
      cut = true;
      this.deaf = true;
      setTimeout(() => this.terminate(), 500);
    }
  }
  const viewer = client(buyer, { WS: Cutting });
  const duplicatesBefore = await engine.metric("liveshop_claims_total{result=\"duplicate\"}");
  const claim = await viewer.claim(drop.id, 2);
  assert.equal(claim.status, "reserved");
  assert.equal(claim.quantity, 2);
  assert.deepEqual(viewer.closes.map((c) => c.code), [1006]);
  assert.equal(sentClaims.length, 2);
  assert.equal(sentClaims[0].key, sentClaims[1].key, "the same key on both connections");
  const mine = await engine.api("GET", "/v1/claims", buyer);
  assert.deepEqual(mine.items.map((c) => c.id), [claim.id], "one claim in the engine");
  assert.equal(await engine.metric("liveshop_claims_total{result=\"duplicate\"}"), duplicatesBefore + 1);
  const stored = await engine.api("GET", `/v1/drops/${drop.id}`, s.seller);
  assert.equal(stored.reserved, 2);
  // Another call is another purchase: a second claim.
  const second = await viewer.claim(drop.id, 1);
  assert.notEqual(second.id, claim.id);
  await viewer.close();
});

test("a viewer that stops reading is closed with 4008, reconnects and joins again", T, async () => {
  const s = await engine.setup();
  const { Tracked, sockets } = trackedWS();
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }), { WS: Tracked });
  // The engine's frame allowance is lifted for this file: no pacing for the flood.
  const seller = client(s.seller, { framesPerSecond: 0 });
  const joins = [];
  viewer.on("joined", (j) => joins.push(j));
  let delivered = 0;
  await viewer.join(s.stream, () => { delivered += 1; });
  const before = await engine.metric("liveshop_slow_consumers_total");
  sockets[0].pause();
  const text = "x".repeat(500);
  let slow = false;
  for (let round = 0; round < 200 && !slow; round++) {
    await Promise.all(Array.from({ length: 200 }, () => seller.chat(s.stream, text)));
    slow = (await engine.metric("liveshop_slow_consumers_total")) > before;
  }
  assert.ok(slow, "the engine never found the viewer slow");
  sockets[0].resume();
  await until(() => viewer.closes.length > 0, { what: "close" });
  assert.equal(viewer.closes[0].code, 4008, `closed with ${JSON.stringify(viewer.closes[0])}`);
  assert.equal(viewer.closes[0].reason, "slow_consumer");
  await live(viewer);
  await until(() => joins.length === 2, { what: "joined after reconnect" });
  assert.ok(joins[1].resumed === true || joins[1].snapshot, "resumed or a snapshot");
  assert.deepEqual(viewer.states, ["live", "reconnecting", "live"]);
  const ok = await seller.chat(s.stream, "still there?");
  await until(() => viewer.position(s.stream).seq === ok.seq, { what: "live again" });
  assert.ok(delivered > 0);
  await viewer.close();
  await seller.close();
});

test("an engine restart (SIGTERM) closes with 1012; the client reconnects, re-joins and sends queued calls", T, async () => {
  const s = await engine.setup();
  const sentJoins = [];
  class Recording extends WebSocket {
    send(data, ...rest) {
      const f = JSON.parse(data);
      if (f.op === "join") sentJoins.push(f);
      super.send(data, ...rest);
    }
  }
  const viewer = client(engine.token({ role: "viewer", tid: s.tenant, sub: "bob" }), { WS: Recording });
  const joins = [];
  const seqs = [];
  viewer.on("joined", (j) => joins.push(j));
  const first = await viewer.join(s.stream, (ev) => { if (ev.seq) seqs.push(ev.seq); });
  await viewer.chat(s.stream, "before the restart");
  await until(() => seqs.length === 1, { what: "first event" });
  const stopping = engine.stop();
  await until(() => viewer.state === "reconnecting", { what: "reconnecting" });
  await stopping;
  assert.deepEqual(viewer.closes[0], { code: 1012, reason: "restarting", reconnect: true });
  const queued = viewer.chat(s.stream, "queued while away");
  await engine.start();
  await live(viewer);
  const ok = await queued;
  assert.equal(ok.type, "ok");
  // The chat's ok may overtake the joined (PROTOCOL.md, order of replies).
  await until(() => joins.length === 2, { what: "joined after the restart" });
  assert.deepEqual(sentJoins.map((j) => [j.epoch, j.since]), [[undefined, undefined], [first.epoch, first.seq + 1]]);
  const rejoin = joins[1];
  // The stream's actor starts again with the process: a new epoch, so a snapshot.
  assert.equal(rejoin.resumed, false);
  assert.ok(rejoin.epoch > first.epoch, `epoch ${rejoin.epoch} after ${first.epoch}: ${JSON.stringify(joins.map(({ snapshot, ...j }) => j))} sent ${JSON.stringify(sentJoins)}`);
  assert.ok(rejoin.snapshot.chat.some((c) => c.text === "before the restart"), "the snapshot has the old chat");
  await until(() => viewer.position(s.stream).seq === ok.seq, { what: "queued chat's event" });
  assert.deepEqual(viewer.states, ["live", "reconnecting", "live"]);
  await viewer.close();
});

test("calls queued beyond the engine's frame allowance all get through at the client's pace", T, async () => {
  // An engine with the default frame allowance (a burst of 100, then 50 per second).
  const strict = new Engine({ LIVESHOP_CHAT_BURST: "100000", LIVESHOP_CHAT_PER_SEC: "100000" });
  await strict.start();
  try {
    const s = await strict.setup();
    const token = strict.token({ role: "viewer", tid: s.tenant, sub: "bob" });
    const send = async (options) => {
      const c = connect({ url: strict.origin, token, WebSocket, requestTimeoutMs: 3000, ...options });
      opened.push(c);
      const dropped = [];
      c.on("error", (e) => dropped.push(e.code));
      // Queued while connecting, flushed at once after the welcome.
      const joined = c.join(s.stream);
      const results = await Promise.allSettled(Array.from({ length: 160 }, (_, i) => c.chat(s.stream, `m${i}`)));
      await joined;
      await c.close();
      return { ok: results.filter((r) => r.status === "fulfilled").length, dropped };
    };
    const paced = await send({});
    assert.deepEqual(paced, { ok: 160, dropped: [] });
    // Without the pace the engine drops frames over its allowance, which shows the pace matters.
    const unpaced = await send({ framesPerSecond: 0 });
    assert.ok(unpaced.ok < 160, `unpaced: ${JSON.stringify(unpaced)}`);
    assert.ok(unpaced.dropped.includes("rate_limited"));
  } finally {
    await strict.dispose();
  }
});
