// Shared by every page: the token (from `#token=` or the sign-in box, kept in sessionStorage and
// sent only in the Authorization header), REST calls, error wording, and small DOM helpers.

const TOKEN_KEY = "liveshop.token";

/** The fragment's parameters, read once: `#token=<jwt>&stream=<id>`. */
const fragment = new URLSearchParams(location.hash.slice(1));

/**
 * Takes a token from the URL fragment into sessionStorage and removes the fragment from the
 * address bar, so it is neither bookmarked nor shown.
 */
function adoptFragmentToken() {
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
  }
  if (location.hash) {
    history.replaceState(null, "", location.pathname + location.search);
  }
}
adoptFragmentToken();

/** A fragment parameter other than the token (e.g. `stream`), read before the fragment was cleared. */
export function fragmentParam(name) {
  return fragment.get(name);
}

/** The current token, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Stores a token (from the sign-in box). */
export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

/** Forgets the token. */
export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * The claims of a token, decoded for display only (the server verifies it): `{sub, role, tid,
 * name, exp}`, or null when it is not a JWT.
 */
export function claims(jwt = token()) {
  if (!jwt) return null;
  const parts = jwt.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), "="));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** An error answered by the engine: `code` and `message` as in the contract's error body. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retry_after_ms = retryAfterMs;
  }
}

/**
 * Calls the REST API with the stored token (or `opts.token`) in the Authorization header and
 * returns the parsed JSON body; throws ApiError on an error answer.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { accept: "application/json" };
  const bearer = opts.token ?? token();
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let answer;
  try {
    answer = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The engine cannot be reached.");
  }
  const text = await answer.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!answer.ok) {
    const err = json && json.error ? json.error : {};
    const retry = Number(answer.headers.get("retry-after"));
    throw new ApiError(
      answer.status,
      err.code || `http_${answer.status}`,
      err.message || answer.statusText,
      Number.isFinite(retry) && retry > 0 ? retry * 1000 : undefined,
    );
  }
  return json;
}

/** A duration in plain words: 42 s, 4 min 59 s, 2 h 5 min, 3 days 4 h. */
export function duration(ms) {
  let s = Math.max(1, Math.ceil((Number(ms) || 0) / 1000));
  if (s < 60) return `${s} s`;
  const days = Math.floor(s / 86_400);
  s -= days * 86_400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const min = Math.floor(s / 60);
  s -= min * 60;
  if (days) return `${days} day${days === 1 ? "" : "s"}${h ? ` ${h} h` : ""}`;
  if (h) return `${h} h${min ? ` ${min} min` : ""}`;
  return `${min} min${s ? ` ${s} s` : ""}`;
}

/**
 * Plain words for an error (an ApiError, a WebSocket error frame, or anything thrown):
 * `sold_out` is "Sold out", `rate_limited` is "Slow down: N s", `muted` says for how long.
 */
export function plainWords(err) {
  const code = err && err.code;
  switch (code) {
    case "sold_out":
      return "Sold out";
    case "rate_limited": {
      const ms = Number(err.retry_after_ms) || 1000;
      return `Slow down: ${Math.max(1, Math.ceil(ms / 1000))} s`;
    }
    case "muted":
      return Number(err.retry_after_ms) > 0
        ? `You are muted in this chat for ${duration(err.retry_after_ms)} more.`
        : "You are muted in this chat.";
    case "blocked":
      return "Your message contains a word that is not allowed here.";
    case "banned":
      return "You were removed from this shop.";
    case "limit_exceeded":
      return "You already hold as many as one person may claim.";
    case "drop_closed":
      return "This drop has closed.";
    case "not_joined":
      return "Not connected to this show yet; try again in a moment.";
    case "unauthorized":
      return "Your sign-in is not valid any more. Sign in again.";
    case "forbidden":
      return "Your role may not do that.";
    case "not_found":
      return "Not found.";
    case "invalid_state":
      return "Not possible right now: " + (err.message || "the show is not in the right state") + ".";
    case "conflict":
      return "That already exists.";
    case "unavailable":
      return "The engine is busy or restarting; try again.";
    case "disconnected":
      return "The connection dropped before the answer came; try again.";
    case "timeout":
      return "No answer in time; try again.";
    case "closed":
      return "The connection is closed. Reload the page to connect again.";
    case "queue_full":
      return "Too much is waiting for the connection; wait until it is back.";
    case "network":
      return "The engine cannot be reached.";
    case "bad_request":
      return "Please check the form: " + (err.message || "a field is not valid") + ".";
    default:
      return (err && err.message) || "Something went wrong.";
  }
}

/**
 * What to tell someone whose connection the engine ended for good (`client.lastClose` of the
 * SDK), or null when it did not: a 1008 close is a ban ("removed") unless the token expired.
 */
export function removalWords(close) {
  if (!close || close.code !== 1008) return null;
  if (close.reason === "token_expired") return "Your sign-in has expired. Sign in again to keep watching.";
  return "You were removed from this show.";
}

/** `document.querySelector` by `data-testid`. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** `document.getElementById`, failing loudly when a page lacks an element the script needs. */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** Creates an element with a class and text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Shows `message` in the page's error banner (empty hides it). */
export function showError(message) {
  const banner = byTestId("error-banner") || document.getElementById("error-banner");
  if (!banner) return;
  banner.textContent = message || "";
  banner.hidden = !message;
}

/** The WebSocket endpoint of this origin. */
export function wsUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/ws`;
}

/** Formats minor units as a price: 4990 EUR → "49.90 EUR". */
export function price(cents, currency) {
  const n = Number(cents);
  if (!Number.isFinite(n)) return "";
  return `${(n / 100).toFixed(2)} ${currency || ""}`.trim();
}

/** Whether the engine runs in dev mode (it answers `GET /dev`). */
export async function devMode() {
  try {
    const answer = await fetch("/dev", { cache: "no-store" });
    return answer.ok;
  } catch {
    return false;
  }
}

/** Mints a token through `POST /dev/token` (dev mode only). */
export async function devToken(body) {
  const answer = await api("POST", "/dev/token", body, { token: "" });
  return answer.token;
}

/**
 * Wires the sign-in box of a page: the form `#signin-form` with input `#signin-token`, the
 * "signed in as" line `#signed-in`, and the sign-out button `#signout`. Calls `onChange` after a
 * sign-in or sign-out.
 */
export function wireSignIn(onChange) {
  const form = document.getElementById("signin-form");
  const input = document.getElementById("signin-token");
  const who = document.getElementById("signed-in");
  const out = document.getElementById("signout");
  const render = () => {
    const c = claims();
    const signedIn = Boolean(token());
    if (form) form.hidden = signedIn;
    if (out) out.hidden = !signedIn;
    if (who) {
      who.textContent = signedIn
        ? `Signed in as ${c ? c.name || c.sub : "?"} (${c ? c.role : "unknown role"}${c && c.tid ? `, tenant ${c.tid}` : ""})`
        : "Not signed in.";
    }
  };
  if (form && input) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!input.value.trim()) return;
      setToken(input.value);
      input.value = "";
      render();
      onChange();
    });
  }
  if (out) {
    out.addEventListener("click", () => {
      signOut();
      render();
      onChange();
    });
  }
  render();
  return render;
}
