// Starts a real Liveshop engine for the SDK's tests, mints tokens for it and calls its REST API.
//
// The binary is `LIVESHOP_BIN`, else the first of target/debug/liveshop and target/release/liveshop
// of the repository that exists. Tests that need it are skipped (with the reason) when there is none.

import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../../..");

/** The engine binary to test against, or null. */
export function engineBinary() {
  const candidates = [
    process.env.LIVESHOP_BIN,
    join(repo, "target/debug/liveshop"),
    join(repo, "target/release/liveshop"),
  ].filter(Boolean);
  return candidates.find((p) => existsSync(p)) || null;
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** Signs HS256 claims with `secret`. */
export function mintToken(secret, claims) {
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/**
 * One engine process on a free port with its own SQLite database. `restart()` stops it with
 * SIGTERM and starts it again on the same port and database.
 */
export class Engine {
  constructor(env = {}) {
    this.secret = randomBytes(24).toString("hex");
    this.dir = mkdtempSync(join(tmpdir(), "liveshop-sdk-"));
    this.extraEnv = env;
    this.listen = "127.0.0.1:0";
    this.proc = null;
    this.log = [];
  }

  /** Starts the process and waits for its `listening addr=` line. */
  async start() {
    const bin = engineBinary();
    if (!bin) throw new Error("no liveshop binary (set LIVESHOP_BIN)");
    const env = {
      ...process.env,
      LIVESHOP_LISTEN: this.listen,
      LIVESHOP_JWT_SECRET: this.secret,
      LIVESHOP_ENV: "dev",
      DATABASE_URL: `sqlite://${this.dir}/t.db?mode=rwc`,
      RUST_LOG: "info",
      ...this.extraEnv,
    };
    delete env.REDIS_URL;
    const proc = spawn(bin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    this.exited = new Promise((res) => proc.once("exit", (code, signal) => res({ code, signal })));
    const addr = await new Promise((res, rej) => {
      let buf = "";
      const timer = setTimeout(() => rej(new Error(`engine did not start:\n${this.log.join("")}`)), 30_000);
      const onData = (chunk) => {
        const s = chunk.toString();
        this.log.push(s);
        buf += s;
        const m = /listening addr=(\S+)/.exec(buf);
        if (m) {
          clearTimeout(timer);
          res(m[1]);
        }
      };
      proc.stdout.on("data", onData);
      proc.stderr.on("data", (c) => this.log.push(c.toString()));
      proc.once("exit", (code) => {
        clearTimeout(timer);
        rej(new Error(`engine exited with ${code}:\n${this.log.join("")}`));
      });
    });
    this.listen = addr;
    this.origin = `http://${addr}`;
    return this;
  }

  /** SIGTERM (clients get 1012), wait for the exit, start again on the same port and database. */
  async restart() {
    await this.stop();
    await this.start();
  }

  /** Stops the process with SIGTERM and waits for it. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const killer = setTimeout(() => this.proc.kill("SIGKILL"), 15_000);
    await this.exited;
    clearTimeout(killer);
  }

  /** Stops the process and removes its database. */
  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A token for this engine; `ttl` in seconds (negative: already expired). */
  token({ role, tid, sub, name, ttl = 3600 }) {
    const claims = { sub: sub || `${role}-user`, role, exp: Math.floor(Date.now() / 1000) + ttl };
    if (tid) claims.tid = tid;
    if (name) claims.name = name;
    return mintToken(this.secret, claims);
  }

  /** A REST call; throws on an unexpected status. */
  async api(method, path, token, body, expect = [200, 201]) {
    const res = await fetch(this.origin + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!expect.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** The value of a counter in /metrics (summed over its labels). */
  async metric(name) {
    const text = await (await fetch(`${this.origin}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{")) {
        sum += Number(line.trim().split(/\s+/).pop());
      }
    }
    return sum;
  }

  /**
   * A tenant with a seller, a live stream and a product; returns tokens and ids.
   */
  async setup() {
    const op = this.token({ role: "operator", sub: "ops" });
    const slug = `t-${randomBytes(4).toString("hex")}`;
    const tenant = await this.api("POST", "/v1/tenants", op, { slug, name: "SDK test" });
    const seller = this.token({ role: "seller", tid: tenant.id, sub: "ann", name: "Ann" });
    const stream = await this.api("POST", "/v1/streams", seller, { title: "SDK show" });
    await this.api("POST", `/v1/streams/${stream.id}/start`, seller);
    const product = await this.api("POST", "/v1/products", seller, {
      sku: "MUG-1", title: "Blue mug", price_cents: 1500, currency: "EUR",
    });
    return { operator: op, tenant: tenant.id, seller, stream: stream.id, product: product.id };
  }
}

/** Resolves when `pred()` is true, polling every `ms`; rejects after `timeout` ms. */
export async function until(pred, { timeout = 10_000, ms = 20, what = "condition" } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}
