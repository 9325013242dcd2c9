// The SDK's pure parts: backoff, close-code policy, URLs, token expiry, resume bookkeeping.

import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, closeAction, wsUrl, tokenExpiry, StreamCursor, newKey } from "../liveshop.js";
import { mintToken } from "./support/engine.js";

const almostOne = () => 1 - Number.EPSILON;

test("backoff starts below half a second and doubles its ceiling per attempt", () => {
  assert.equal(backoffDelay(0, almostOne), 499);
  assert.equal(backoffDelay(1, almostOne), 999);
  assert.equal(backoffDelay(2, almostOne), 1999);
  assert.equal(backoffDelay(5, almostOne), 15999);
});

test("backoff never exceeds twenty seconds however many attempts failed", () => {
  assert.equal(backoffDelay(6, almostOne), 19999);
  assert.equal(backoffDelay(60, almostOne), 19999);
  assert.equal(backoffDelay(1e9, almostOne), 19999);
  for (let a = 0; a < 100; a++) assert.ok(backoffDelay(a) < 20_000);
});

test("backoff is full jitter: zero is possible and samples spread over the whole range", () => {
  assert.equal(backoffDelay(4, () => 0), 0);
  assert.equal(backoffDelay(4, () => 0.5), 4000);
  const samples = Array.from({ length: 4000 }, () => backoffDelay(3));
  assert.ok(samples.every((d) => d >= 0 && d < 4000));
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  assert.ok(mean > 1700 && mean < 2300, `mean ${mean} is not near 2000`);
  assert.ok(new Set(samples).size > 1000, "samples are not spread");
  assert.ok(samples.some((d) => d < 400) && samples.some((d) => d > 3600));
});

test("backoff treats a negative or missing attempt as the first one", () => {
  assert.equal(backoffDelay(-3, almostOne), 499);
  assert.equal(backoffDelay(undefined, almostOne), 499);
});

test("only a policy close (1008) stops the client; every other code reconnects", () => {
  assert.equal(closeAction(1008), "stop");
  for (const code of [1000, 1006, 1009, 1011, 1012, 4008]) assert.equal(closeAction(code), "reconnect", String(code));
});

test("an http origin becomes the ws endpoint and the token goes into the query", () => {
  assert.equal(wsUrl("http://127.0.0.1:8080", "a.b.c"), "ws://127.0.0.1:8080/v1/ws?token=a.b.c");
  assert.equal(wsUrl("https://shop.example/", "t"), "wss://shop.example/v1/ws?token=t");
  assert.equal(wsUrl("wss://shop.example/v1/ws", "t"), "wss://shop.example/v1/ws?token=t");
  assert.equal(wsUrl("ws://h:1/v1/ws?token=old", "new"), "ws://h:1/v1/ws?token=new");
  assert.throws(() => wsUrl("ftp://h", "t"), TypeError);
});

test("a token's expiry is read from its claims, and garbage has none", () => {
  const t = mintToken("s".repeat(32), { sub: "bob", role: "viewer", tid: "t", exp: 1234567890, name: "Bø" });
  assert.equal(tokenExpiry(t), 1234567890);
  assert.equal(tokenExpiry("not a token"), null);
  assert.equal(tokenExpiry(mintToken("s", { sub: "x" })), null);
});

test("claim keys are fresh UUIDs", () => {
  const a = newKey();
  const b = newKey();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, b);
});

test("a cursor asks for a plain join until it has seen a joined frame", () => {
  const c = new StreamCursor();
  assert.deepEqual(c.joinFields(), {});
  c.onJoined({ type: "joined", stream: "s", epoch: 3, seq: 41, resumed: false, snapshot: {} });
  assert.deepEqual(c.joinFields(), { epoch: 3, since: 41 });
});

test("a cursor delivers the next seq, drops duplicates, flags gaps and passes ephemeral events", () => {
  const c = new StreamCursor();
  c.onJoined({ type: "joined", stream: "s", epoch: 1, seq: 5, resumed: false });
  assert.equal(c.onEvent({ seq: 5 }), "duplicate");
  assert.equal(c.onEvent({ seq: 6 }), "deliver");
  assert.equal(c.onEvent({ kind: "viewers" }), "ephemeral");
  assert.equal(c.onEvent({ seq: 6 }), "duplicate");
  assert.equal(c.onEvent({ seq: 8 }), "gap");
  assert.equal(c.seq, 6, "a gap does not move the cursor");
  assert.equal(c.onEvent({ seq: 7 }), "deliver");
  assert.deepEqual(c.joinFields(), { epoch: 1, since: 7 });
});

test("a resumed joined keeps the position so the replayed events move it", () => {
  const c = new StreamCursor();
  c.onJoined({ type: "joined", stream: "s", epoch: 2, seq: 10, resumed: false });
  // Reconnected: the server says seq 14 is its head and replays 11..14.
  c.onJoined({ type: "joined", stream: "s", epoch: 2, seq: 14, resumed: true });
  assert.equal(c.seq, 10);
  for (const seq of [11, 12, 13, 14]) assert.equal(c.onEvent({ seq }), "deliver");
  assert.deepEqual(c.joinFields(), { epoch: 2, since: 14 });
});

test("a snapshot in a new epoch (restart or lost resume) replaces the position", () => {
  const c = new StreamCursor();
  c.onJoined({ type: "joined", stream: "s", epoch: 2, seq: 10, resumed: false });
  c.onJoined({ type: "joined", stream: "s", epoch: 3, seq: 0, resumed: false });
  assert.deepEqual(c.joinFields(), { epoch: 3, since: 0 });
  assert.equal(c.onEvent({ seq: 1 }), "deliver");
  // A resume refused within the same epoch (events dropped from the buffer): jump to the head.
  c.onJoined({ type: "joined", stream: "s", epoch: 3, seq: 2000, resumed: false });
  assert.equal(c.onEvent({ seq: 2001 }), "deliver");
});

test("the frame pacer lets a burst through, then one frame per 1/rate seconds", async () => {
  const { FramePacer } = await import("../liveshop.js");
  const p = new FramePacer(3, 10);
  assert.deepEqual([p.take(0), p.take(0), p.take(0)], [0, 0, 0]);
  assert.equal(p.take(0), 100, "the fourth waits 100 ms at 10/s");
  assert.equal(p.take(50), 50);
  assert.equal(p.take(100), 0);
  assert.ok(p.take(100) > 0);
  p.reset();
  assert.equal(p.take(100), 0, "a reset gives the burst back");
  assert.equal(new FramePacer(1, 0).take(0), 0, "rate 0 never waits");
});
