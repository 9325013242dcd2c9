// Liveshop client SDK: one WebSocket to the engine's `/v1/ws` that reconnects by itself, resumes
// joined streams by epoch and seq, and turns request frames into promises.
//
// An ES module without dependencies. It runs in browsers and in Node.js 20 (pass a `WebSocket`
// implementation, e.g. the `ws` package, since Node 20 has none built in).
//
//   import { connect } from "/sdk/liveshop.js";
//   const client = connect({ url: location.origin, token });
//   client.on("state", (s) => console.log(s));
//   await client.join("str_…", (ev) => console.log(ev.kind, ev.data));
//   await client.chat("str_…", "hello");
//
// The protocol is described in docs/PROTOCOL.md and this module in docs/SDK.md.

/**
 * Connection state of a client.
 * - `connecting`: before the first connection is live.
 * - `live`: connected; the server's `welcome` was received.
 * - `reconnecting`: the connection was lost; a new one is being attempted.
 * - `closed`: `close()` was called, or the server refused the client (close code 1008 or a
 *   refused token); the client will not reconnect.
 * @typedef {"connecting" | "live" | "reconnecting" | "closed"} ClientState
 */

/**
 * Options of {@link connect}.
 * @typedef {object} ConnectOptions
 * @property {string} [url] The WebSocket endpoint `ws(s)://host/v1/ws`, or an `http(s)://host`
 *   origin. In a browser it defaults to the page's origin.
 * @property {string | (() => string | Promise<string>)} token The JWT, or a function returning one;
 *   a function is called before every connection attempt, so a long-lived client can refresh it.
 * @property {WebSocketConstructor} [WebSocket] A WebSocket implementation; defaults to
 *   `globalThis.WebSocket`. Required in Node.js 20 (e.g. `import { WebSocket } from "ws"`).
 * @property {number} [requestTimeoutMs=20000] How long a sent request waits for its reply before it
 *   fails with code `timeout` (a claim is retried with its key instead).
 * @property {number} [heartbeatMs=25000] Interval of application pings that detect a dead
 *   connection; a ping unanswered for `requestTimeoutMs` drops the connection. 0 disables them.
 * @property {boolean} [retryRateLimited=true] Whether a `chat` refused with `rate_limited` is sent
 *   once more after the server's `retry_after_ms`.
 * @property {number} [maxQueue=1000] Most calls kept while not connected; more fail with `queue_full`.
 * @property {number} [framesPerSecond=45] Pace of frames sent, so a burst of calls (a full queue
 *   flushed after a reconnect) stays within the engine's frame allowance (by default a burst of
 *   100, then 50 per second) instead of losing frames to it. 0 turns pacing off.
 * @property {number} [frameBurst=90] Frames that may go out at once before the pace applies.
 * @property {() => number} [random] Source of randomness in [0, 1) for the backoff jitter.
 */

/**
 * A WebSocket constructor, as in browsers (`new WebSocket(url)`).
 * @typedef {new (url: string) => WebSocketLike} WebSocketConstructor
 */

/**
 * The part of a WebSocket the SDK uses.
 * @typedef {object} WebSocketLike
 * @property {number} readyState 0 connecting, 1 open, 2 closing, 3 closed.
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {(type: string, listener: (event: any) => void) => void} addEventListener
 * @property {(type: string, listener: (event: any) => void) => void} [removeEventListener]
 */

/**
 * `{"type":"welcome"}`: sent by the server once per connection.
 * @typedef {object} WelcomeFrame
 * @property {"welcome"} type
 * @property {string} session Id of this connection's session.
 * @property {string} user The token's `sub`.
 * @property {string | null} tenant The token's tenant.
 * @property {number} protocol Protocol version (1).
 */

/**
 * `{"type":"joined"}`: the answer to a join, or an unsolicited one after a stream actor restart.
 * @typedef {object} JoinedFrame
 * @property {"joined"} type
 * @property {string} [ref] Absent when the server sent it unsolicited.
 * @property {string} stream
 * @property {number} epoch The stream's current epoch.
 * @property {number} seq Last seq handed out in that epoch (0 if none yet).
 * @property {boolean} resumed `true`: the missed events follow in order; `false`: `snapshot` holds
 *   the stream's current state, which replaces whatever the client had.
 * @property {Snapshot} [snapshot] Present when `resumed` is `false`.
 */

/**
 * The current state of a stream, carried by a `joined` frame with `resumed:false`.
 * @typedef {object} Snapshot
 * @property {object} stream The stream, as in the REST API.
 * @property {number} viewers
 * @property {string | null} pinned
 * @property {object[]} drops Open or sold-out drops.
 * @property {ChatData[]} chat The last 50 chat messages, oldest first.
 * @property {object | null} [auction] The open auction, once the server has auctions.
 */

/**
 * Data of a `chat` event.
 * @typedef {object} ChatData
 * @property {string} id
 * @property {{id: string, name: string}} user
 * @property {string} text
 * @property {string} at RFC 3339 UTC time.
 */

/**
 * `{"type":"event"}`: one event of a joined stream. Ordered kinds (`chat`, `status`, `pinned`,
 * `drop_opened`, `drop_closed`, `sold_out`, ...) carry `seq`; ephemeral ones (`viewers`,
 * `reactions`, `inventory`) do not.
 * @typedef {object} EventFrame
 * @property {"event"} type
 * @property {string} stream
 * @property {number} [seq]
 * @property {string} kind
 * @property {any} data
 */

/**
 * `{"type":"ok"}`: success reply to `leave`, `chat` (with `seq`), `claim` (with `claim`), `bid`
 * (with `bid`).
 * @typedef {object} OkFrame
 * @property {"ok"} type
 * @property {string} [ref]
 * @property {number} [seq]
 * @property {Claim} [claim]
 * @property {Bid} [bid]
 */

/**
 * `{"type":"error"}` from the server.
 * @typedef {object} ErrorFrame
 * @property {"error"} type
 * @property {string} [ref]
 * @property {string} code e.g. `not_joined`, `sold_out`, `rate_limited`.
 * @property {string} message For people; branch on `code`.
 * @property {number} [retry_after_ms] With `rate_limited` (and `muted`).
 */

/**
 * A claim (reservation of units of a drop).
 * @typedef {object} Claim
 * @property {string} id
 * @property {string} drop
 * @property {string} user
 * @property {number} quantity
 * @property {"reserved" | "paid" | "expired"} status
 * @property {string} [created_at]
 * @property {string} expires_at
 */

/**
 * A bid as the server answers it (contract section 8).
 * @typedef {object} Bid
 * @property {string} auction
 * @property {number} amount_cents
 * @property {string} bidder
 * @property {string} ends_at
 * @property {boolean} leading
 */

/**
 * `{"type":"claim_update"}`: a claim of this user was paid or expired.
 * @typedef {object} ClaimUpdateFrame
 * @property {"claim_update"} type
 * @property {Claim} claim
 */

/**
 * `{"type":"pong"}`: reply to a `ping`.
 * @typedef {object} PongFrame
 * @property {"pong"} type
 * @property {string} [ref]
 */

/**
 * Any frame the server sends.
 * @typedef {WelcomeFrame | JoinedFrame | EventFrame | OkFrame | ErrorFrame | ClaimUpdateFrame | PongFrame} ServerFrame
 */

/**
 * How a connection ended, as told to `on("close")` listeners and kept in `client.lastClose`.
 * @typedef {object} CloseInfo
 * @property {number} code The WebSocket close code (1006 when the socket failed without one).
 * @property {string} reason The close frame's reason, e.g. `restarting` or `token_expired`.
 * @property {boolean} reconnect Whether the client will connect again.
 */

/**
 * Listener types of {@link LiveshopClient#on}.
 * @typedef {object} ClientEvents
 * @property {(state: ClientState) => void} state Every state change.
 * @property {(frame: ServerFrame) => void} frame Every frame the server sends, as an object.
 * @property {(frame: JoinedFrame) => void} joined Every `joined` frame: answers, resumes after a
 *   reconnect and unsolicited ones after a stream restart. With `resumed:false`, replace the state
 *   of that stream with `frame.snapshot`.
 * @property {(error: LiveshopError) => void} error An error frame that answers no pending call
 *   (e.g. a failed re-join, or a frame dropped by the connection's rate limit).
 * @property {(info: CloseInfo) => void} close A connection ended.
 */

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 20_000;
/** A connection live this long resets the backoff. */
const STABLE_MS = 60_000;
/** Codes of ref-less error frames that say nothing about joined streams. */
const UNTIED_CODES = new Set(["rate_limited", "bad_frame", "bad_request"]);
/** How often a claim is sent again (same key) after `unavailable` or a timeout. */
const CLAIM_RETRIES = 3;

/**
 * Full-jitter exponential backoff: a delay drawn uniformly from
 * `[0, min(20 s, 0.5 s × 2^attempt))`. Pure, for tests and for callers that reconnect by hand.
 * @param {number} attempt Failed attempts so far (0 for the first reconnect).
 * @param {() => number} [random=Math.random] Source of randomness in [0, 1).
 * @returns {number} Delay in milliseconds.
 */
export function backoffDelay(attempt, random = Math.random) {
  const n = Math.max(0, Math.floor(Number(attempt) || 0));
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(n, 30));
  const r = Math.min(Math.max(Number(random()) || 0, 0), 1);
  return Math.floor(r * ceiling);
}

/**
 * What the client does after a close code: `"reconnect"` (1012 restarting, 4008 slow consumer,
 * 1011 internal, 1006 transport failure, 1000 from the server such as an idle timeout, anything
 * else) or `"stop"` (1008 policy: token expired, banned, origin). A close asked for by
 * `client.close()` always stops.
 * @param {number} code WebSocket close code.
 * @returns {"reconnect" | "stop"}
 */
export function closeAction(code) {
  return code === 1008 ? "stop" : "reconnect";
}

/**
 * The WebSocket URL to open: a `ws(s)://host/v1/ws` endpoint is kept, an `http(s)://host` origin
 * becomes `ws(s)://host/v1/ws`; the token is added as `?token=`.
 * @param {string} url Endpoint or origin.
 * @param {string} token The JWT.
 * @returns {string}
 */
export function wsUrl(url, token) {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`liveshop: url must be ws(s):// or http(s)://, got ${u.protocol}`);
  }
  if (!u.pathname.endsWith("/v1/ws")) u.pathname = u.pathname.replace(/\/+$/, "") + "/v1/ws";
  u.hash = "";
  u.searchParams.set("token", token);
  return u.toString();
}

/**
 * Reads a JWT's `exp` claim (seconds since the epoch) without verifying it, or `null` when the
 * token has none or cannot be read. Used to stop at once on a token that has already expired.
 * @param {string} token
 * @returns {number | null}
 */
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const json = typeof atob === "function"
      ? decodeURIComponent(escape(atob(b64)))
      : /** @type {any} */ (globalThis).Buffer.from(b64, "base64").toString("utf8");
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/**
 * A fresh idempotency key for a claim: a random UUID.
 * @returns {string}
 */
export function newKey() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const h = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The error a call rejects with. It carries the server's error frame fields (`type`, `code`,
 * `message`, `ref`, `retry_after_ms`) and the frame itself. Codes made by the SDK, not the
 * server: `disconnected` (a chat, bid or leave was in flight when the connection dropped; it may or
 * may not have been applied), `timeout`, `closed` (the client is closed), `queue_full`, `left`
 * (the stream was left before its join was answered).
 */
export class LiveshopError extends Error {
  /**
   * @param {ErrorFrame} frame The error frame (or one made by the SDK with the same shape).
   */
  constructor(frame) {
    super(frame.message || frame.code);
    this.name = "LiveshopError";
    /** @type {"error"} */
    this.type = "error";
    /** @type {string} */
    this.code = frame.code;
    /** @type {string | undefined} */
    this.ref = frame.ref;
    /** @type {number | undefined} Milliseconds to wait before trying again (`rate_limited`). */
    this.retry_after_ms = frame.retry_after_ms;
    /** @type {ErrorFrame} */
    this.frame = frame;
  }
}

/**
 * Resume bookkeeping of one joined stream: the epoch and the last seq processed. Pure (no I/O),
 * so it is tested on its own.
 */
export class StreamCursor {
  constructor() {
    /** @type {number | null} Epoch of the last `joined`, `null` before the first. */
    this.epoch = null;
    /** @type {number} Last ordered seq delivered in that epoch. */
    this.seq = 0;
  }

  /**
   * Fields to add to a `join` so the server can resume: `{epoch, since}` once a `joined` was
   * seen, else nothing.
   * @returns {{epoch?: number, since?: number}}
   */
  joinFields() {
    return this.epoch === null ? {} : { epoch: this.epoch, since: this.seq };
  }

  /**
   * Takes a `joined` frame. With `resumed:false` (a snapshot), the position jumps to the frame's
   * epoch and seq; with `resumed:true` it stays where it was, since the missed events follow.
   * @param {JoinedFrame} frame
   * @returns {void}
   */
  onJoined(frame) {
    if (frame.resumed && this.epoch === frame.epoch) return;
    this.epoch = frame.epoch;
    this.seq = typeof frame.seq === "number" ? frame.seq : 0;
  }

  /**
   * Classifies an event: `"ephemeral"` (no seq; deliver), `"deliver"` (the next seq; the cursor
   * moves to it), `"duplicate"` (already delivered; drop) or `"gap"` (a seq is missing; the
   * stream must be re-joined with {@link StreamCursor#joinFields}).
   * @param {EventFrame} frame
   * @returns {"ephemeral" | "deliver" | "duplicate" | "gap"}
   */
  onEvent(frame) {
    if (typeof frame.seq !== "number") return "ephemeral";
    if (frame.seq <= this.seq) return "duplicate";
    if (frame.seq !== this.seq + 1) return "gap";
    this.seq = frame.seq;
    return "deliver";
  }
}

/**
 * A connection to the engine that reconnects by itself. Made by {@link connect}.
 */
export class LiveshopClient {
  /**
   * @param {ConnectOptions} options
   */
  constructor(options) {
    if (!options || options.token === undefined || options.token === null || options.token === "") {
      throw new TypeError("liveshop: connect() needs a token");
    }
    const WS = options.WebSocket || globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("liveshop: no WebSocket implementation; pass connect({WebSocket}) (e.g. from the ws package)");
    }
    let url = options.url;
    if (!url && typeof location !== "undefined") url = location.origin;
    if (!url) throw new TypeError("liveshop: connect() needs a url");
    wsUrl(url, "x"); // validates the url now, not at the first attempt
    /** @private */ this._url = url;
    /** @private */ this._token = options.token;
    /** @private */ this._WS = WS;
    /** @private */ this._timeoutMs = options.requestTimeoutMs ?? 20_000;
    /** @private */ this._heartbeatMs = options.heartbeatMs ?? 25_000;
    /** @private */ this._retryRateLimited = options.retryRateLimited ?? true;
    /** @private */ this._maxQueue = options.maxQueue ?? 1000;
    /** @private */ this._pace = new FramePacer(options.frameBurst ?? 90, options.framesPerSecond ?? 45);
    /** @private @type {{data: string, call: any}[]} frames waiting for the pace */ this._outbox = [];
    /** @private */ this._drainTimer = null;
    /** @private */ this._random = options.random || Math.random;

    /** @type {ClientState} The current state. */
    this.state = "connecting";
    /** @type {WelcomeFrame | null} The `welcome` of the current (or last) connection. */
    this.welcome = null;
    /** @type {CloseInfo | null} How the last connection ended. */
    this.lastClose = null;

    /** @private @type {Map<string, Set<Function>>} */ this._listeners = new Map();
    /** @private @type {WebSocketLike | null} */ this._ws = null;
    /** @private */ this._attempt = 0;
    /** @private */ this._refSeq = 0;
    /** @private @type {Map<string, any>} request ref -> pending call */ this._pending = new Map();
    /** @private @type {any[]} calls waiting for a connection */ this._queue = [];
    /** @private @type {Map<string, any>} stream -> subscription */ this._subs = new Map();
    /** @private @type {Set<any>} reactions sent and not yet confirmed */ this._reacts = new Set();
    /** @private */ this._fenceScheduled = false;
    /** @private */ this._timers = { reconnect: null, stable: null, heartbeat: null };
    /** @private */ this._closing = null;
    // Listeners added right after connect() see everything, a refused token included.
    queueMicrotask(() => this._open());
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @template {keyof ClientEvents} K
   * @param {K} event `state`, `frame`, `joined`, `error` or `close`.
   * @param {ClientEvents[K]} fn
   * @returns {() => void}
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /**
   * Removes a listener added with {@link LiveshopClient#on}.
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {ClientEvents[K]} fn
   * @returns {void}
   */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  /**
   * The resume position kept for a joined stream, or `null` when it is not joined.
   * @param {string} stream
   * @returns {{epoch: number | null, seq: number} | null}
   */
  position(stream) {
    const sub = this._subs.get(stream);
    return sub ? { epoch: sub.cursor.epoch, seq: sub.cursor.seq } : null;
  }

  /**
   * Joins a stream. Resolves with the `joined` reply; `onEvent` is called for every `event` frame
   * of that stream, ordered ones in seq order (replayed ones included), until `leave`. After a
   * reconnect the stream is joined again with its epoch and last seq, so missed events are
   * replayed (or a snapshot comes, see the `joined` listener). Joining a joined stream again
   * replaces `onEvent`.
   * @param {string} stream Stream id.
   * @param {(frame: EventFrame) => void} [onEvent]
   * @returns {Promise<JoinedFrame>}
   */
  join(stream, onEvent) {
    if (this.state === "closed") return Promise.reject(this._closedError());
    let sub = this._subs.get(stream);
    if (!sub) {
      sub = { stream, onEvent: null, cursor: new StreamCursor(), ref: null, waiters: [], resyncing: false };
      this._subs.set(stream, sub);
    }
    sub.onEvent = onEvent || null;
    const p = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    if (this.state === "live") this._sendJoin(sub);
    return p;
  }

  /**
   * Leaves a stream: its events stop at once and it is not joined again after a reconnect.
   * Resolves with the server's `ok` (at once with a made-up `{type:"ok"}` when not connected).
   * @param {string} stream
   * @returns {Promise<OkFrame>}
   */
  leave(stream) {
    const sub = this._subs.get(stream);
    if (sub) {
      this._subs.delete(stream);
      const err = new LiveshopError({ type: "error", code: "left", message: "the stream was left" });
      for (const w of sub.waiters.splice(0)) w.reject(err);
    }
    if (this.state === "closed") return Promise.reject(this._closedError());
    if (this.state !== "live") return Promise.resolve({ type: "ok" });
    return this._request({ op: "leave", stream }, { resend: false });
  }

  /**
   * Sends a chat message. Resolves with `{type:"ok", ref, seq}` where `seq` is the message's event.
   * A `rate_limited` refusal is retried once after `retry_after_ms` (unless `retryRateLimited` is
   * false); then it rejects with the error, whose `retry_after_ms` says how long to wait.
   * @param {string} stream
   * @param {string} text 1 to 500 characters after trimming.
   * @returns {Promise<OkFrame>}
   */
  async chat(stream, text) {
    const frame = { op: "chat", stream, text };
    try {
      return await this._request(frame, { resend: false });
    } catch (err) {
      if (!this._retryRateLimited || !(err instanceof LiveshopError) || err.code !== "rate_limited") throw err;
      await sleep(Math.max(0, err.retry_after_ms ?? 1000));
      return this._request(frame, { resend: false });
    }
  }

  /**
   * Sends a reaction (`heart`, `fire`, `clap`, `laugh`, `wow`, `cart`). The server answers a
   * reaction only when it refuses it, so the SDK follows reactions with one `ping`: the promise
   * resolves when the server has handled the reaction and rejects with its error frame.
   * @param {string} stream
   * @param {string} emoji
   * @returns {Promise<void>}
   */
  react(stream, emoji) {
    if (this.state === "closed") return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      const call = { frame: { op: "react", stream, emoji }, resolve, reject, kind: "react", resend: false };
      this._submit(call);
    });
  }

  /**
   * Claims units of a drop. One idempotency key is made per call and reused when the claim is
   * sent again (after a reconnect, an `unavailable` answer or a timeout), so the engine makes at
   * most one claim per call. Resolves with the claim.
   * @param {string} drop Drop id.
   * @param {number} quantity At least 1.
   * @param {{key?: string}} [options] `key`: an idempotency key of your own (e.g. kept across page
   *   reloads); by default a random UUID.
   * @returns {Promise<Claim>}
   */
  async claim(drop, quantity, options = {}) {
    const frame = { op: "claim", drop, quantity, key: options.key || newKey() };
    for (let attempt = 0; ; attempt++) {
      try {
        const ok = await this._request(frame, { resend: true });
        return ok.claim;
      } catch (err) {
        const retry = err instanceof LiveshopError && (err.code === "unavailable" || err.code === "timeout");
        if (!retry || attempt >= CLAIM_RETRIES || this.state === "closed") throw err;
        await sleep(backoffDelay(attempt, this._random));
      }
    }
  }

  /**
   * Places a bid on an auction (contract section 8) with op `bid`. Resolves with the bid.
   * The engine has no auctions yet: it answers `bid` with an error frame (`bad_frame`, "unknown
   * op"), so this call rejects until it does.
   * @param {string} auction Auction id.
   * @param {number} amount_cents Bid in minor units.
   * @param {{max_cents?: number}} [options] `max_cents`: a proxy bid's ceiling.
   * @returns {Promise<Bid>}
   */
  async bid(auction, amount_cents, options = {}) {
    /** @type {{op: string, auction: string, amount_cents: number, max_cents?: number}} */
    const frame = { op: "bid", auction, amount_cents };
    if (options.max_cents !== undefined) frame.max_cents = options.max_cents;
    const ok = await this._request(frame, { resend: false });
    return ok.bid;
  }

  /**
   * Closes the connection with code 1000 and stops reconnecting. Pending and queued calls reject
   * with code `closed`. Resolves when the socket is closed.
   * @returns {Promise<void>}
   */
  close() {
    if (this._closing) return this._closing;
    const ws = this._ws;
    this._closing = new Promise((resolve) => {
      if (!ws || ws.readyState === 3) return resolve();
      ws.addEventListener("close", () => resolve());
      setTimeout(resolve, 2000);
    });
    this._shutdown({ code: 1000, reason: "client_closed", reconnect: false });
    if (ws && ws.readyState <= 1) {
      try { ws.close(1000, "client_closed"); } catch { /* already closing */ }
    }
    return this._closing;
  }

  // ---- internals ------------------------------------------------------------------------

  /** @private */
  _emit(event, value) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try { fn(value); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  /** @private */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  /** @private */
  _closedError() {
    return new LiveshopError({ type: "error", code: "closed", message: "the client is closed" });
  }

  /** @private Opens one connection attempt. */
  async _open() {
    this._timers.reconnect = null;
    let token;
    try {
      token = typeof this._token === "function" ? await this._token() : this._token;
    } catch (e) {
      this._lost({ code: 1006, reason: `token: ${e && e.message}` });
      return;
    }
    if (this.state === "closed") return;
    const exp = tokenExpiry(token);
    if (exp !== null && exp <= Date.now() / 1000) {
      this._shutdown({ code: 1008, reason: "token_expired", reconnect: false });
      return;
    }
    let ws;
    try {
      ws = new this._WS(wsUrl(this._url, token));
    } catch (e) {
      this._lost({ code: 1006, reason: String(e && e.message) });
      return;
    }
    this._ws = ws;
    let refused = null;
    const onMessage = (ev) => { if (this._ws === ws) this._onMessage(ev.data); };
    const onError = (ev) => {
      // Node's `ws` tells why an upgrade failed; browsers do not. 401/403 will not get better.
      const m = /Unexpected server response: (\d+)/.exec(String((ev && (ev.message || ev.error?.message)) || ""));
      if (m && (m[1] === "401" || m[1] === "403")) refused = m[1];
    };
    const onClose = (ev) => {
      if (this._ws !== ws) return;
      if (refused) this._lost({ code: 1008, reason: `upgrade refused with HTTP ${refused}` });
      else this._lost({ code: ev.code || 1006, reason: ev.reason || "" });
    };
    ws.addEventListener("message", onMessage);
    ws.addEventListener("error", onError);
    ws.addEventListener("close", onClose);
  }

  /** @private */
  _onMessage(data) {
    let frame;
    try {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    this._emit("frame", frame);
    switch (frame.type) {
      case "welcome": return this._onWelcome(frame);
      case "joined": return this._onJoined(frame);
      case "event": return this._onEvent(frame);
      case "ok":
      case "pong": return this._onReply(frame);
      case "error": return this._onError(frame);
      default: return undefined;
    }
  }

  /** @private The connection is live: re-join streams, then send what was queued. */
  _onWelcome(frame) {
    this.welcome = frame;
    this._setState("live");
    clearTimeout(this._timers.stable);
    this._timers.stable = setTimeout(() => { this._attempt = 0; }, STABLE_MS);
    this._startHeartbeat();
    this._pace.reset();
    for (const sub of this._subs.values()) this._sendJoin(sub);
    const queue = this._queue.splice(0);
    for (const call of queue) this._submit(call);
  }

  /** @private */
  _sendJoin(sub) {
    sub.ref = this._nextRef("j");
    sub.resyncing = false;
    this._send({ op: "join", stream: sub.stream, ...sub.cursor.joinFields(), ref: sub.ref });
  }

  /** @private */
  _onJoined(frame) {
    const sub = this._subs.get(frame.stream);
    if (!sub) return;
    if (frame.ref !== undefined && frame.ref !== sub.ref) return; // answer to a superseded join
    sub.cursor.onJoined(frame);
    sub.resyncing = false;
    this._emit("joined", frame);
    for (const w of sub.waiters.splice(0)) w.resolve(frame);
  }

  /** @private */
  _onEvent(frame) {
    const sub = this._subs.get(frame.stream);
    if (!sub || sub.cursor.epoch === null) return;
    if (sub.resyncing && typeof frame.seq === "number") return;
    const verdict = sub.cursor.onEvent(frame);
    if (verdict === "gap") {
      sub.resyncing = true;
      this._sendJoin(sub);
      sub.resyncing = true;
      return;
    }
    if (verdict === "duplicate") return;
    if (sub.onEvent) {
      try { sub.onEvent(frame); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  /** @private */
  _onReply(frame) {
    const call = frame.ref !== undefined ? this._pending.get(frame.ref) : undefined;
    if (!call) return;
    this._settle(call);
    if (call.kind === "fence") {
      for (const r of call.reacts) if (this._reacts.delete(r)) r.resolve();
      return;
    }
    if (call.kind === "ping") return;
    call.resolve(frame);
  }

  /** @private */
  _onError(frame) {
    const err = new LiveshopError(frame);
    if (frame.ref !== undefined) {
      const call = this._pending.get(frame.ref);
      if (call) {
        this._settle(call);
        if (call.kind === "react") this._reacts.delete(call);
        return call.reject(err);
      }
      for (const sub of this._subs.values()) {
        if (sub.ref === frame.ref) {
          // A join (or a re-join after a reconnect) was refused: the stream is no longer joined.
          this._subs.delete(sub.stream);
          if (sub.waiters.length) {
            for (const w of sub.waiters.splice(0)) w.reject(err);
          } else {
            this._emit("error", err);
          }
          return;
        }
      }
    }
    this._emit("error", err);
    if (frame.ref === undefined && !UNTIED_CODES.has(frame.code)) {
      // The engine could not re-join a stream for us after the stream restarted (such an error
      // has no ref and does not say which stream). Joining again is harmless for the others.
      for (const sub of this._subs.values()) this._sendJoin(sub);
    }
  }

  /** @private */
  _nextRef(prefix) {
    this._refSeq += 1;
    return `${prefix}${this._refSeq}`;
  }

  /**
   * @private Sends a frame, or keeps it in the outbox while the pace says wait (frames keep their
   * order). `call` is marked `sent` once its frame is written.
   */
  _send(frame, call = null) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    this._outbox.push({ data: JSON.stringify(frame), call });
    this._drain();
    return true;
  }

  /** @private */
  _drain() {
    clearTimeout(this._drainTimer);
    this._drainTimer = null;
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return;
    while (this._outbox.length) {
      const wait = this._pace.take(Date.now());
      if (wait > 0) {
        this._drainTimer = setTimeout(() => this._drain(), wait);
        return;
      }
      const { data, call } = this._outbox.shift();
      ws.send(data);
      if (call) call.sent = true;
    }
  }

  /**
   * @private Sends a request frame and waits for its reply (an `ok` or `pong` with its ref).
   * `resend`: whether it is sent again after a reconnect when it was in flight (idempotent ops).
   */
  _request(frame, { resend }) {
    if (this.state === "closed") return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      this._submit({ frame, resolve, reject, kind: "request", resend });
    });
  }

  /** @private Sends a call now, or queues it until the connection is live. */
  _submit(call) {
    if (this.state !== "live") {
      if (this._queue.length >= this._maxQueue) {
        call.reject(new LiveshopError({ type: "error", code: "queue_full", message: "too many calls waiting for a connection" }));
        return;
      }
      this._queue.push(call);
      return;
    }
    const ref = this._nextRef(call.kind === "react" ? "r" : "q");
    call.ref = ref;
    this._pending.set(ref, call);
    if (call.kind !== "react") {
      call.timer = setTimeout(() => this._onTimeout(call), this._timeoutMs);
    }
    call.sent = false;
    call.fenced = false;
    this._send({ ...call.frame, ref }, call);
    if (call.kind === "react") {
      this._reacts.add(call);
      this._scheduleFence();
    }
  }

  /** @private One ping after a burst of reactions confirms all of them (replies keep order). */
  _scheduleFence() {
    if (this._fenceScheduled) return;
    this._fenceScheduled = true;
    queueMicrotask(() => {
      this._fenceScheduled = false;
      const reacts = [...this._reacts].filter((r) => !r.fenced);
      if (!reacts.length || this.state !== "live") return;
      for (const r of reacts) r.fenced = true;
      const ref = this._nextRef("f");
      const fence = { kind: "fence", ref, reacts, resend: false, resolve() {}, reject() {} };
      fence.timer = setTimeout(() => this._onTimeout(fence), this._timeoutMs);
      this._pending.set(ref, fence);
      this._send({ op: "ping", ref });
    });
  }

  /** @private */
  _settle(call) {
    clearTimeout(call.timer);
    this._pending.delete(call.ref);
  }

  /** @private */
  _onTimeout(call) {
    if (this._pending.get(call.ref) !== call) return;
    this._settle(call);
    const err = new LiveshopError({ type: "error", ref: call.ref, code: "timeout", message: "no reply from the server in time" });
    if (call.kind === "ping") {
      // The connection looks dead: drop it and reconnect.
      this._dropSocket();
      return;
    }
    if (call.kind === "fence") {
      for (const r of call.reacts) if (this._reacts.delete(r)) r.resolve();
      return;
    }
    call.reject(err);
  }

  /** @private */
  _startHeartbeat() {
    clearInterval(this._timers.heartbeat);
    if (!this._heartbeatMs) return;
    this._timers.heartbeat = setInterval(() => {
      if (this.state !== "live") return;
      const ref = this._nextRef("p");
      const call = { kind: "ping", ref, resolve() {}, reject() {} };
      call.timer = setTimeout(() => this._onTimeout(call), this._timeoutMs);
      this._pending.set(ref, call);
      this._send({ op: "ping", ref });
    }, this._heartbeatMs);
  }

  /** @private Gives up on the current socket without waiting for its close handshake. */
  _dropSocket() {
    const ws = this._ws;
    if (!ws) return;
    try { ws.close(4000, "heartbeat_timeout"); } catch { /* ignore */ }
    this._lost({ code: 1006, reason: "heartbeat_timeout" });
  }

  /** @private The connection ended (or an attempt failed): reconnect, or stop on 1008. */
  _lost({ code, reason }) {
    if (this.state === "closed") return;
    if (closeAction(code) === "stop") {
      this._shutdown({ code, reason, reconnect: false });
      return;
    }
    this._detach();
    const info = { code, reason, reconnect: true };
    this.lastClose = info;
    this._emit("close", info);
    this._setState(this.state === "connecting" ? "connecting" : "reconnecting");
    // In-flight calls: idempotent ones (claims) and those whose frame was still waiting for the
    // pace go back to the queue; the others may or may not have been applied, so they fail with
    // `disconnected` and the caller decides.
    const inflight = [...this._pending.values()].sort((a, b) => refNum(a.ref) - refNum(b.ref));
    this._pending.clear();
    const resent = [];
    for (const call of inflight) {
      clearTimeout(call.timer);
      if (call.kind === "fence" || call.kind === "ping") continue;
      if (call.kind === "react") this._reacts.delete(call);
      if (call.resend || !call.sent) resent.push(call);
      else call.reject(new LiveshopError({ type: "error", ref: call.ref, code: "disconnected", message: `connection lost (${code}${reason ? " " + reason : ""}) before the reply` }));
    }
    for (const r of this._reacts) r.reject(new LiveshopError({ type: "error", code: "disconnected", message: "connection lost before the reply" }));
    this._reacts.clear();
    this._queue = [...resent, ...this._queue];
    const delay = backoffDelay(this._attempt, this._random);
    this._attempt += 1;
    this._timers.reconnect = setTimeout(() => this._open(), delay);
  }

  /** @private Stops for good: state `closed`, every waiting call rejects. */
  _shutdown(info) {
    if (this.state === "closed") return;
    this._detach();
    clearTimeout(this._timers.reconnect);
    this.lastClose = info;
    this._setState("closed");
    this._emit("close", info);
    const err = info.code === 1000
      ? this._closedError()
      : new LiveshopError({ type: "error", code: "closed", message: `closed by the server (${info.code} ${info.reason})` });
    for (const call of this._pending.values()) { clearTimeout(call.timer); call.reject(err); }
    this._pending.clear();
    for (const call of this._queue) call.reject(err);
    this._queue = [];
    for (const r of this._reacts) r.reject(err);
    this._reacts.clear();
    for (const sub of this._subs.values()) for (const w of sub.waiters.splice(0)) w.reject(err);
  }

  /** @private Forgets the current socket and its timers. */
  _detach() {
    clearTimeout(this._drainTimer);
    this._drainTimer = null;
    this._outbox = [];
    clearTimeout(this._timers.stable);
    clearInterval(this._timers.heartbeat);
    this._timers.stable = null;
    this._timers.heartbeat = null;
    if (this._ws && this.state !== "closed") {
      const ws = this._ws;
      this._ws = null;
      if (ws.readyState <= 1 && this._closing === null) {
        try { ws.close(1000, "client_closed"); } catch { /* ignore */ }
      }
    }
  }
}

/**
 * Token bucket that paces outgoing frames. Pure: time is passed in.
 */
export class FramePacer {
  /**
   * @param {number} burst Frames that may go at once.
   * @param {number} perSecond Refill rate; 0 or less: no pacing.
   */
  constructor(burst, perSecond) {
    this.burst = Math.max(1, burst);
    this.perSecond = perSecond;
    this.tokens = this.burst;
    this.at = null;
  }

  /**
   * Starts full again (a new connection has a new allowance).
   * @returns {void}
   */
  reset() {
    this.tokens = this.burst;
    this.at = null;
  }

  /**
   * Takes one frame's allowance at `now` (ms). Returns 0 when the frame may go now, else the
   * milliseconds to wait before asking again (nothing is taken then).
   * @param {number} now
   * @returns {number}
   */
  take(now) {
    if (!(this.perSecond > 0)) return 0;
    if (this.at !== null) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSecond) / 1000);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.perSecond));
  }
}

/** @param {string} ref */
function refNum(ref) {
  return Number(String(ref).replace(/^\D+/, "")) || 0;
}

/** @param {number} ms */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Opens a client: connects at once, and again after every loss (full-jitter backoff from 0.5 s
 * up to 20 s, reset after a minute live), until `close()` or a 1008 close.
 * @param {ConnectOptions} options
 * @returns {LiveshopClient}
 */
export function connect(options) {
  return new LiveshopClient(options);
}
