// A scripted stand-in for a WebSocket: the test plays the server, the SDK sees a browser-like socket.

/** Every socket the SDK opened, newest last. */
export class FakeServer {
  constructor() {
    /** @type {FakeSocket[]} */
    this.sockets = [];
    const server = this;
    /** The constructor to pass as `connect({WebSocket})`. */
    this.WebSocket = class extends FakeSocket {
      constructor(url) {
        super(url);
        server.sockets.push(this);
      }
    };
  }

  /** The newest socket. */
  get last() {
    return this.sockets[this.sockets.length - 1];
  }
}

export class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** Frames the SDK sent, parsed. */
    this.sent = [];
    this.listeners = new Map();
    this.closedWith = null;
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  removeEventListener(type, fn) {
    const l = this.listeners.get(type) || [];
    const i = l.indexOf(fn);
    if (i >= 0) l.splice(i, 1);
  }

  dispatch(type, event) {
    for (const fn of [...(this.listeners.get(type) || [])]) fn(event);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 3;
    queueMicrotask(() => this.dispatch("close", { code, reason }));
  }

  // ---- the server's side ----

  /** Opens the socket and sends a welcome. */
  accept(session = "ses_1") {
    this.readyState = 1;
    this.dispatch("open", {});
    this.push({ type: "welcome", session, user: "bob", tenant: "ten_1", protocol: 1 });
  }

  /** Sends a frame to the SDK. */
  push(frame) {
    this.dispatch("message", { data: JSON.stringify(frame) });
  }

  /** The server closes the connection. */
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.dispatch("close", { code, reason });
  }

  /** The last sent frame with this op. */
  lastOp(op) {
    return [...this.sent].reverse().find((f) => f.op === op);
  }
}

/** Lets timers and microtasks run. */
export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
