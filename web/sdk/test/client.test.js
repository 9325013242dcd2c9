// The client against a scripted socket: states, close codes, queueing, resume, claims, reactions.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, LiveshopError } from "../liveshop.js";
import { FakeServer, tick } from "./support/fake-ws.js";
import { mintToken } from "./support/engine.js";

const token = mintToken("s".repeat(32), { sub: "bob", role: "viewer", tid: "ten_1", exp: Math.floor(Date.now() / 1000) + 3600 });

/** A client on a fake server, with no backoff delay and no heartbeat. */
function setup(extra = {}) {
  const server = new FakeServer();
  const client = connect({ url: "http://shop.test", token, WebSocket: server.WebSocket, random: () => 0, heartbeatMs: 0, ...extra });
  const states = [];
  client.on("state", (s) => states.push(s));
  return { server, client, states };
}

/** Answers the last join on `sock` for `stream`. */
function answerJoin(sock, stream, { epoch = 1, seq = 0, resumed = false } = {}) {
  const j = [...sock.sent].reverse().find((f) => f.op === "join" && f.stream === stream);
  assert.ok(j, `no join for ${stream}`);
  sock.push({ type: "joined", ref: j.ref, stream, epoch, seq, resumed, ...(resumed ? {} : { snapshot: { chat: [] } }) });
  return j;
}

test("the client opens the ws endpoint with the token and is live after the welcome", async () => {
  const { server, client, states } = setup();
  assert.equal(client.state, "connecting");
  await tick();
  assert.equal(server.last.url, `ws://shop.test/v1/ws?token=${token}`);
  server.last.accept();
  assert.equal(client.state, "live");
  assert.equal(client.welcome.session, "ses_1");
  assert.deepEqual(states, ["live"]);
  await client.close();
});

test("calls made before the connection is live are queued and sent after it, joins first", async () => {
  const { server, client } = setup();
  const chat = client.chat("s1", "early");
  const join = client.join("s1", () => {});
  await tick();
  assert.equal(server.last.sent.length, 0);
  server.last.accept();
  const ops = server.last.sent.map((f) => f.op);
  assert.deepEqual(ops, ["join", "chat"]);
  answerJoin(server.last, "s1", { epoch: 1, seq: 0 });
  const c = server.last.lastOp("chat");
  server.last.push({ type: "ok", ref: c.ref, seq: 1 });
  assert.equal((await join).epoch, 1);
  assert.deepEqual(await chat, { type: "ok", ref: c.ref, seq: 1 });
  await client.close();
});

test("events reach onEvent in seq order once, and ephemeral ones pass through", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const got = [];
  const joined = client.join("s1", (ev) => got.push(ev.seq ?? ev.kind));
  answerJoin(server.last, "s1", { epoch: 1, seq: 2 });
  await joined;
  for (const seq of [2, 3, 4, 4]) server.last.push({ type: "event", stream: "s1", seq, kind: "chat", data: {} });
  server.last.push({ type: "event", stream: "s1", kind: "viewers", data: { count: 1 } });
  server.last.push({ type: "event", stream: "other", seq: 5, kind: "chat", data: {} });
  assert.deepEqual(got, [3, 4, "viewers"]);
  assert.deepEqual(client.position("s1"), { epoch: 1, seq: 4 });
  await client.close();
});

test("a restarting close (1012) reconnects and re-joins with epoch and since", async () => {
  const { server, client, states } = setup();
  const closes = [];
  client.on("close", (c) => closes.push(c));
  await tick();
  server.last.accept();
  const got = [];
  const joined = client.join("s1", (ev) => got.push(ev.seq));
  answerJoin(server.last, "s1", { epoch: 7, seq: 10 });
  await joined;
  server.last.push({ type: "event", stream: "s1", seq: 11, kind: "chat", data: {} });
  server.last.serverClose(1012, "restarting");
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(closes, [{ code: 1012, reason: "restarting", reconnect: true }]);
  await tick(5);
  assert.equal(server.sockets.length, 2);
  server.last.accept("ses_2");
  const rejoin = server.last.lastOp("join");
  assert.deepEqual({ stream: rejoin.stream, epoch: rejoin.epoch, since: rejoin.since }, { stream: "s1", epoch: 7, since: 11 });
  answerJoin(server.last, "s1", { epoch: 7, seq: 13, resumed: true });
  for (const seq of [12, 13, 14]) server.last.push({ type: "event", stream: "s1", seq, kind: "chat", data: {} });
  assert.deepEqual(got, [11, 12, 13, 14]);
  assert.deepEqual(states, ["live", "reconnecting", "live"]);
  await client.close();
});

test("a slow-consumer close (4008) reconnects and resumes like a restart", async () => {
  const { server, client, states } = setup();
  await tick();
  server.last.accept();
  const joined = client.join("s1");
  answerJoin(server.last, "s1", { epoch: 2, seq: 3 });
  await joined;
  server.last.serverClose(4008, "slow_consumer");
  await tick(5);
  server.last.accept("ses_2");
  const rejoin = server.last.lastOp("join");
  assert.equal(rejoin.epoch, 2);
  assert.equal(rejoin.since, 3);
  assert.deepEqual(states, ["live", "reconnecting", "live"]);
  assert.equal(client.lastClose.code, 4008);
  await client.close();
});

test("a policy close (1008) stops the client, rejects waiting calls and keeps the reason", async () => {
  const { server, client, states } = setup();
  await tick();
  server.last.accept();
  const chat = client.chat("s1", "hi");
  server.last.serverClose(1008, "token_expired");
  await assert.rejects(chat, (e) => e instanceof LiveshopError && e.code === "closed" && /token_expired/.test(e.message));
  assert.equal(client.state, "closed");
  assert.deepEqual(states, ["live", "closed"]);
  assert.deepEqual(client.lastClose, { code: 1008, reason: "token_expired", reconnect: false });
  await tick(10);
  assert.equal(server.sockets.length, 1, "no reconnect after 1008");
  await assert.rejects(client.chat("s1", "again"), (e) => e.code === "closed");
});

test("close() sends 1000, ends in closed and never reconnects", async () => {
  const { server, client, states } = setup();
  await tick();
  server.last.accept();
  await client.close();
  assert.deepEqual(server.last.closedWith, { code: 1000, reason: "client_closed" });
  assert.deepEqual(states, ["live", "closed"]);
  await tick(10);
  assert.equal(server.sockets.length, 1);
});

test("a token that has already expired closes the client without connecting", async () => {
  const server = new FakeServer();
  const old = mintToken("s".repeat(32), { sub: "bob", role: "viewer", tid: "t", exp: 1000 });
  const client = connect({ url: "ws://shop.test/v1/ws", token: old, WebSocket: server.WebSocket });
  await tick();
  assert.equal(client.state, "closed");
  assert.equal(client.lastClose.reason, "token_expired");
  assert.equal(server.sockets.length, 0);
});

test("a token function is asked again before every connection", async () => {
  let n = 0;
  const { server, client } = setup({ token: () => { n += 1; return token; } });
  await tick();
  server.last.accept();
  server.last.serverClose(1011, "internal");
  await tick(5);
  assert.equal(n, 2);
  assert.equal(server.sockets.length, 2);
  await client.close();
});

test("a claim in flight when the connection drops is sent again with the same key", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const claim = client.claim("drp_1", 2);
  const first = server.last.lastOp("claim");
  assert.equal(first.quantity, 2);
  assert.ok(first.key.length > 0);
  server.last.serverClose(1012, "restarting");
  await tick(5);
  server.last.accept("ses_2");
  const again = server.last.lastOp("claim");
  assert.equal(again.key, first.key);
  server.last.push({ type: "ok", ref: again.ref, claim: { id: "clm_1", drop: "drp_1", quantity: 2, status: "reserved" } });
  assert.equal((await claim).id, "clm_1");
  // A second call is another purchase intent: another key.
  const second = client.claim("drp_1", 1);
  assert.notEqual(server.last.lastOp("claim").key, first.key);
  server.last.push({ type: "error", ref: server.last.lastOp("claim").ref, code: "sold_out", message: "sold out" });
  await assert.rejects(second, (e) => e.code === "sold_out" && e.type === "error");
  await client.close();
});

test("a claim answered unavailable is retried with its key", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const claim = client.claim("drp_1", 1, { key: "my-key" });
  const first = server.last.lastOp("claim");
  assert.equal(first.key, "my-key");
  server.last.push({ type: "error", ref: first.ref, code: "unavailable", message: "retry with the same key" });
  await tick(5);
  const again = server.last.lastOp("claim");
  assert.notEqual(again.ref, first.ref);
  assert.equal(again.key, "my-key");
  server.last.push({ type: "ok", ref: again.ref, claim: { id: "clm_9" } });
  assert.equal((await claim).id, "clm_9");
  await client.close();
});

test("a chat in flight when the connection drops fails with disconnected, not resent", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const chat = client.chat("s1", "maybe");
  server.last.serverClose(1006, "");
  await assert.rejects(chat, (e) => e.code === "disconnected");
  await tick(5);
  server.last.accept("ses_2");
  assert.equal(server.last.lastOp("chat"), undefined);
  await client.close();
});

test("a rate-limited chat is retried once after retry_after_ms, then rejects with it", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const chat = client.chat("s1", "hi");
  const first = server.last.lastOp("chat");
  server.last.push({ type: "error", ref: first.ref, code: "rate_limited", message: "rate limit reached", retry_after_ms: 30 });
  await tick(5);
  assert.equal(server.last.sent.filter((f) => f.op === "chat").length, 1, "waits retry_after_ms");
  await tick(40);
  const second = server.last.lastOp("chat");
  assert.notEqual(second.ref, first.ref);
  server.last.push({ type: "error", ref: second.ref, code: "rate_limited", message: "rate limit reached", retry_after_ms: 120 });
  await assert.rejects(chat, (e) => e.code === "rate_limited" && e.retry_after_ms === 120);
  await client.close();
});

test("reactions resolve when the ping sent after them is answered and reject on their error", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const a = client.react("s1", "heart");
  const b = client.react("s1", "nope");
  await tick();
  const sent = server.last.sent;
  assert.deepEqual(sent.map((f) => f.op), ["react", "react", "ping"], "one ping for a burst");
  server.last.push({ type: "error", ref: sent[1].ref, code: "bad_request", message: "emoji: unknown" });
  server.last.push({ type: "pong", ref: sent[2].ref });
  await a;
  await assert.rejects(b, (e) => e.code === "bad_request");
  await client.close();
});

test("an unsolicited joined after a stream restart starts the new epoch", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const got = [];
  const seen = [];
  client.on("joined", (j) => seen.push(j.epoch));
  const joined = client.join("s1", (ev) => got.push(`${ev.seq}`));
  answerJoin(server.last, "s1", { epoch: 1, seq: 5 });
  await joined;
  server.last.push({ type: "joined", stream: "s1", epoch: 2, seq: 0, resumed: false, snapshot: {} });
  server.last.push({ type: "event", stream: "s1", seq: 1, kind: "chat", data: {} });
  assert.deepEqual(got, ["1"]);
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(client.position("s1"), { epoch: 2, seq: 1 });
  await client.close();
});

test("a gap in seqs makes the client re-join from its last seq", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const got = [];
  const joined = client.join("s1", (ev) => got.push(ev.seq));
  answerJoin(server.last, "s1", { epoch: 1, seq: 0 });
  await joined;
  server.last.push({ type: "event", stream: "s1", seq: 1, kind: "chat", data: {} });
  server.last.push({ type: "event", stream: "s1", seq: 3, kind: "chat", data: {} });
  const rejoin = server.last.lastOp("join");
  assert.equal(rejoin.since, 1);
  answerJoin(server.last, "s1", { epoch: 1, seq: 3, resumed: true });
  server.last.push({ type: "event", stream: "s1", seq: 2, kind: "chat", data: {} });
  server.last.push({ type: "event", stream: "s1", seq: 3, kind: "chat", data: {} });
  assert.deepEqual(got, [1, 2, 3]);
  await client.close();
});

test("a refused join rejects with the error frame and the stream is not re-joined later", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const joined = client.join("nope");
  const j = server.last.lastOp("join");
  server.last.push({ type: "error", ref: j.ref, code: "not_found", message: "stream not found" });
  await assert.rejects(joined, (e) => e.code === "not_found" && e.ref === j.ref);
  assert.equal(client.position("nope"), null);
  server.last.serverClose(1012, "restarting");
  await tick(5);
  server.last.accept("ses_2");
  assert.equal(server.last.lastOp("join"), undefined);
  await client.close();
});

test("leave stops the events and the stream is not joined again after a reconnect", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const got = [];
  const joined = client.join("s1", (ev) => got.push(ev.seq));
  answerJoin(server.last, "s1");
  await joined;
  const left = client.leave("s1");
  server.last.push({ type: "event", stream: "s1", seq: 1, kind: "chat", data: {} });
  server.last.push({ type: "ok", ref: server.last.lastOp("leave").ref });
  await left;
  assert.deepEqual(got, []);
  server.last.serverClose(1012, "restarting");
  await tick(5);
  server.last.accept("ses_2");
  assert.equal(server.last.lastOp("join"), undefined);
  await client.close();
});

test("bid sends op bid and rejects with the server's error frame", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const bid = client.bid("auc_1", 1500, { max_cents: 2000 });
  const f = server.last.lastOp("bid");
  assert.deepEqual({ auction: f.auction, amount_cents: f.amount_cents, max_cents: f.max_cents }, { auction: "auc_1", amount_cents: 1500, max_cents: 2000 });
  server.last.push({ type: "error", ref: f.ref, code: "bad_frame", message: "unknown op" });
  await assert.rejects(bid, (e) => e.code === "bad_frame");
  await client.close();
});

test("an unanswered request times out", async () => {
  const { server, client } = setup({ requestTimeoutMs: 30 });
  await tick();
  server.last.accept();
  await assert.rejects(client.chat("s1", "hello?"), (e) => e.code === "timeout");
  await client.close();
});

test("an unanswered heartbeat drops the connection and reconnects", async () => {
  const { server, client, states } = setup({ heartbeatMs: 20, requestTimeoutMs: 20 });
  await tick();
  server.last.accept();
  await tick(60);
  assert.ok(server.sockets.length >= 2, "reconnected");
  assert.equal(server.sockets[0].sent[0].op, "ping");
  assert.deepEqual(states.slice(0, 2), ["live", "reconnecting"]);
  await client.close();
});

test("attempts that fail back off further, and every frame reaches the frame listener", async () => {
  const server = new FakeServer();
  const client = connect({ url: "http://shop.test", token, WebSocket: server.WebSocket, heartbeatMs: 0, random: () => 0.999 });
  const frames = [];
  client.on("frame", (f) => frames.push(f.type));
  await tick();
  server.last.serverClose(1006, "");
  await tick(300);
  assert.equal(server.sockets.length, 1, "the first retry waits up to 0.5 s");
  await tick(250);
  assert.equal(server.sockets.length, 2);
  server.last.serverClose(1006, "");
  await tick(700);
  assert.equal(server.sockets.length, 2, "the second retry waits up to 1 s");
  await tick(350);
  assert.equal(server.sockets.length, 3);
  assert.equal(client.state, "connecting", "still before the first connection");
  server.last.accept();
  assert.deepEqual(frames, ["welcome"]);
  await client.close();
});

test("an error without ref about a stream (a failed re-join) makes the client join its streams again", async () => {
  const { server, client } = setup();
  await tick();
  server.last.accept();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));
  const joined = client.join("s1");
  answerJoin(server.last, "s1", { epoch: 1, seq: 4 });
  await joined;
  server.last.push({ type: "error", code: "rate_limited", message: "rate limit reached", retry_after_ms: 10 });
  assert.equal(server.last.sent.filter((f) => f.op === "join").length, 1, "a dropped frame is no reason to re-join");
  server.last.push({ type: "error", code: "not_found", message: "stream not found" });
  const again = server.last.lastOp("join");
  assert.equal(server.last.sent.filter((f) => f.op === "join").length, 2);
  assert.deepEqual([again.epoch, again.since], [1, 4]);
  assert.deepEqual(errors, ["rate_limited", "not_found"]);
  await client.close();
});

test("a full queue is flushed at the frame pace, and unsent calls survive a reconnect", async () => {
  const { server, client } = setup({ frameBurst: 5, framesPerSecond: 100 });
  const chats = Array.from({ length: 12 }, (_, i) => client.chat("s1", `m${i}`));
  await tick();
  server.last.accept();
  assert.equal(server.last.sent.length, 5, "the burst goes at once");
  await tick(35);
  const sentNow = server.last.sent.length;
  assert.ok(sentNow > 5 && sentNow < 12, `paced: ${sentNow} sent after 35 ms`);
  for (const f of server.last.sent) server.last.push({ type: "ok", ref: f.ref, seq: 1 });
  server.last.serverClose(1012, "restarting");
  await tick(5);
  server.last.accept("ses_2");
  await tick(100);
  const texts = server.last.sent.map((f) => f.text);
  assert.deepEqual(texts, Array.from({ length: 12 - sentNow }, (_, i) => `m${sentNow + i}`), "only the unsent ones, in order");
  for (const f of server.last.sent) server.last.push({ type: "ok", ref: f.ref, seq: 2 });
  const oks = await Promise.all(chats);
  assert.equal(oks.length, 12);
  await client.close();
});

test("listeners added right after connect() hear a close for an expired token", async () => {
  const server = new FakeServer();
  const old = mintToken("s".repeat(32), { sub: "bob", role: "viewer", tid: "t", exp: 1000 });
  const client = connect({ url: "ws://shop.test/v1/ws", token: old, WebSocket: server.WebSocket });
  const heard = [];
  client.on("state", (s) => heard.push(s));
  client.on("close", (c) => heard.push(c.code));
  await tick();
  assert.deepEqual(heard, ["closed", 1008]);
});
