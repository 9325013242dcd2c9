// Seller console (`/studio`): products, shows, going live, pinning, drops, live stats from the
// stream's events over the SDK, and the moderation part (moderation.js). A moderator's token gets
// the moderation part only: it picks a show of the shop and sees no products or show controls.
// Auctions are hidden until the engine has them.
import { connect } from "/sdk/liveshop.js";
import { api, claims, el, fragmentParam, plainWords, price, showError, token, wireSignIn, wsUrl, $ } from "./common.js";
import { createModeration } from "./moderation.js";

const STREAM_KEY = "liveshop.studio.stream";

const studio = {
  client: null,
  products: [],
  streams: [],
  stream: null,
  joined: null,
  pinned: null,
  drop: null,
  chatTimes: [],
};

function fail(err) {
  showError(plainWords(err));
}

function ok() {
  showError("");
}

const moderation = createModeration({ fail, ok });

/** Whether the signed-in token is a moderator's (no products, no show controls). */
function isModerator() {
  const me = claims();
  return Boolean(me && me.role === "moderator");
}

/** "12.90" or "12,9" → 1290; NaN when it is not a price. */
function toCents(text) {
  const m = /^\s*(\d+)(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * 100 + Number((m[2] || "0").padEnd(2, "0"));
}

// ---- products ----

function renderProducts() {
  const rows = $("product-rows");
  rows.replaceChildren();
  for (const p of studio.products) {
    const tr = el("tr");
    tr.append(el("td", null, p.sku), el("td", null, p.title), el("td", "num", price(p.price_cents, p.currency)));
    rows.append(tr);
  }
  for (const id of ["pin-product", "drop-product"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren();
    for (const p of studio.products) {
      const option = el("option", null, `${p.title} (${p.sku})`);
      option.value = p.id;
      select.append(option);
    }
    if (keep && studio.products.some((p) => p.id === keep)) select.value = keep;
  }
  if (studio.pinned) $("drop-product").value = studio.pinned;
  renderButtons();
}

async function loadProducts() {
  const answer = await api("GET", "/v1/products");
  studio.products = (answer && answer.items) || [];
  renderProducts();
}

async function createProduct(ev) {
  ev.preventDefault();
  const cents = toCents($("product-price").value);
  if (!Number.isFinite(cents)) {
    showError("Please check the form: the price is a number like 12.90.");
    return;
  }
  try {
    const product = await api("POST", "/v1/products", {
      sku: $("product-sku").value.trim(),
      title: $("product-title").value.trim(),
      price_cents: cents,
      currency: ($("product-currency").value.trim() || "EUR").toUpperCase(),
    });
    studio.products.push(product);
    renderProducts();
    $("pin-product").value = product.id;
    if (!studio.pinned) $("drop-product").value = product.id;
    $("product-sku").value = "";
    $("product-title").value = "";
    $("product-price").value = "";
    ok();
  } catch (err) {
    fail(err);
  }
}

// ---- streams ----

function renderStreams() {
  const select = $("stream-select");
  select.replaceChildren();
  const none = el("option", null, studio.streams.length ? "Choose a show" : "No show yet");
  none.value = "";
  select.append(none);
  for (const s of studio.streams) {
    const option = el("option", null, `${s.title} (${s.status})`);
    option.value = s.id;
    select.append(option);
  }
  select.value = studio.stream ? studio.stream.id : "";
}

function renderStream() {
  const s = studio.stream;
  $("stream-status").textContent = s ? s.status : "none";
  const link = $("stream-watch");
  link.hidden = !s;
  if (s) link.href = `/watch/${encodeURIComponent(s.id)}`;
  renderButtons();
  moderation.setStream(s);
}

function renderButtons() {
  const s = studio.stream;
  const haveProducts = studio.products.length > 0;
  $("stream-go-live").disabled = !s || s.status !== "scheduled";
  $("stream-end").disabled = !s || s.status !== "live";
  $("pin-button").disabled = !s || s.status === "ended" || !haveProducts;
  $("drop-open").disabled = !s || s.status !== "live" || !haveProducts;
}

async function loadStreams() {
  const answer = await api("GET", "/v1/streams");
  const me = claims();
  const items = (answer && answer.items) || [];
  studio.streams = items.filter((s) => !me || me.role === "admin" || me.role === "moderator" || s.seller === me.sub);
}

function replaceStream(stream) {
  const at = studio.streams.findIndex((s) => s.id === stream.id);
  if (at >= 0) studio.streams[at] = stream;
  else studio.streams.push(stream);
  studio.stream = stream;
  renderStreams();
  renderStream();
}

async function selectStream(id) {
  if (studio.joined && studio.client && studio.joined !== id) {
    try {
      await studio.client.leave(studio.joined);
    } catch {
      // Leaving a stream that is gone is fine.
    }
  }
  studio.joined = null;
  studio.pinned = null;
  studio.drop = null;
  studio.chatTimes = [];
  moderation.setMessages([]);
  renderDrop();
  $("pinned-now").textContent = "nothing";
  if (!id) {
    studio.stream = null;
    sessionStorage.removeItem(STREAM_KEY);
    renderStreams();
    renderStream();
    return;
  }
  sessionStorage.setItem(STREAM_KEY, id);
  try {
    replaceStream(await api("GET", `/v1/streams/${encodeURIComponent(id)}`));
    await join(id);
    ok();
  } catch (err) {
    fail(err);
  }
}

async function createStream(ev) {
  ev.preventDefault();
  try {
    const stream = await api("POST", "/v1/streams", { title: $("stream-title").value.trim() });
    $("stream-title").value = "";
    studio.streams.push(stream);
    await selectStream(stream.id);
  } catch (err) {
    fail(err);
  }
}

async function streamAction(action) {
  const s = studio.stream;
  if (!s) return;
  try {
    replaceStream(await api("POST", `/v1/streams/${encodeURIComponent(s.id)}/${action}`));
    ok();
  } catch (err) {
    fail(err);
  }
}

async function pin() {
  const s = studio.stream;
  const product = $("pin-product").value;
  if (!s || !product) return;
  try {
    await api("POST", `/v1/streams/${encodeURIComponent(s.id)}/pin`, { product });
    setPinned(product);
    ok();
  } catch (err) {
    fail(err);
  }
}

function setPinned(product) {
  studio.pinned = product || null;
  const p = studio.products.find((x) => x.id === product);
  $("pinned-now").textContent = product ? (p ? p.title : product) : "nothing";
  if (product && p) $("drop-product").value = product;
}

// ---- drops ----

function renderDrop() {
  const d = studio.drop;
  const remaining = d ? Math.max(0, Number(d.remaining) || 0) : 0;
  $("stat-remaining").textContent = String(remaining);
  $("stat-claims").textContent = String(d ? Math.max(0, (Number(d.quantity) || 0) - remaining) : 0);
  const now = $("drop-now");
  const close = $("drop-close");
  if (!d) {
    now.textContent = "No drop open.";
    close.hidden = true;
    return;
  }
  const p = studio.products.find((x) => x.id === d.product);
  const state = d.status === "closed" ? "closed" : d.status === "sold_out" ? "sold out" : "open";
  now.textContent = `Drop of ${p ? p.title : d.product}: ${remaining} of ${d.quantity} left, ${state}.`;
  close.hidden = d.status === "closed";
}

async function openDrop() {
  const s = studio.stream;
  if (!s) return;
  const quantity = Number($("drop-quantity").value);
  const hold = Number($("drop-hold").value);
  if (!Number.isInteger(quantity) || quantity < 1) {
    showError("Please check the form: the quantity is a whole number of at least 1.");
    return;
  }
  const body = { product: $("drop-product").value, quantity };
  if (Number.isInteger(hold) && hold > 0) body.hold_seconds = hold;
  try {
    studio.drop = await api("POST", `/v1/streams/${encodeURIComponent(s.id)}/drops`, body);
    renderDrop();
    ok();
  } catch (err) {
    fail(err);
  }
}

async function closeDrop() {
  const d = studio.drop;
  if (!d) return;
  try {
    const closed = await api("POST", `/v1/drops/${encodeURIComponent(d.id)}/close`);
    studio.drop = { ...d, ...closed, status: "closed" };
    renderDrop();
    ok();
  } catch (err) {
    fail(err);
  }
}

// ---- live events ----

function applySnapshot(snapshot) {
  if (!snapshot) return;
  $("stat-viewers").textContent = String(Number(snapshot.viewers) || 0);
  setPinned(snapshot.pinned ?? (snapshot.stream && snapshot.stream.pinned) ?? null);
  const drops = snapshot.drops || [];
  if (drops.length) studio.drop = { ...drops[drops.length - 1] };
  renderDrop();
  moderation.setMessages(snapshot.chat || []);
  if (snapshot.stream && studio.stream && snapshot.stream.id === studio.stream.id) {
    replaceStream({ ...studio.stream, ...snapshot.stream });
  }
}

function onEvent(frame) {
  const data = frame.data || {};
  switch (frame.kind) {
    case "viewers":
      $("stat-viewers").textContent = String(Number(data.count) || 0);
      break;
    case "chat":
      studio.chatTimes.push(Date.now());
      moderation.addMessage(data);
      break;
    case "chat_deleted":
      if (data.id) moderation.removeMessage(data.id);
      moderation.refreshLogSoon();
      break;
    case "pinned":
      setPinned(data.product);
      break;
    case "status":
      if (studio.stream) replaceStream({ ...studio.stream, status: data.status });
      break;
    case "drop_opened":
      studio.drop = { ...data };
      renderDrop();
      break;
    case "inventory":
      if (studio.drop && studio.drop.id === data.drop) {
        studio.drop.remaining = data.remaining;
        if (studio.drop.status === "sold_out" && Number(data.remaining) > 0) studio.drop.status = "open";
        renderDrop();
      }
      break;
    case "sold_out":
      if (studio.drop && studio.drop.id === data.drop) {
        studio.drop.remaining = 0;
        studio.drop.status = "sold_out";
        renderDrop();
      }
      break;
    case "drop_closed":
      if (studio.drop && studio.drop.id === data.drop) {
        studio.drop.status = "closed";
        renderDrop();
      }
      break;
    default:
      break;
  }
}

function onFrame(frame) {
  if (frame && frame.type === "joined" && frame.stream === studio.joined && frame.snapshot) {
    applySnapshot(frame.snapshot);
  }
}

function onState(state) {
  const node = $("studio-connection");
  node.textContent = state;
  node.className = `state ${state}`;
}

async function join(id) {
  if (!studio.client) return;
  studio.joined = id;
  const joined = await studio.client.join(id, onEvent);
  if (joined && joined.snapshot) applySnapshot(joined.snapshot);
}

setInterval(() => {
  const since = Date.now() - 5000;
  studio.chatTimes = studio.chatTimes.filter((t) => t >= since);
  $("stat-chat").textContent = (studio.chatTimes.length / 5).toFixed(1);
}, 1000);

// ---- start ----

async function start() {
  if (studio.client) {
    studio.client.close();
    studio.client = null;
  }
  const signedIn = Boolean(token());
  $("console").hidden = !signedIn;
  if (!signedIn) {
    studio.stream = null;
    moderation.setStream(null);
    return;
  }
  const me = claims();
  if (me && !["seller", "admin", "moderator"].includes(me.role)) {
    showError("The studio is for sellers, admins and moderators: sign in with such a token.");
  }
  const moderator = isModerator();
  for (const node of document.querySelectorAll(".owner-only")) node.hidden = moderator;
  studio.client = connect({ url: wsUrl(), token: token() });
  studio.client.on("state", onState);
  studio.client.on("frame", onFrame);
  try {
    // Products only name the pinned one for a moderator; their list failing is no reason to stop.
    await Promise.all([moderator ? loadProducts().catch(() => {}) : loadProducts(), loadStreams()]);
    const wanted = fragmentParam("stream") || sessionStorage.getItem(STREAM_KEY);
    const newest = (fits) => [...studio.streams].reverse().find(fits);
    const pick = studio.streams.find((s) => s.id === wanted)
      || (moderator && newest((s) => s.status === "live"))
      || newest((s) => s.status !== "ended");
    renderStreams();
    await selectStream(pick ? pick.id : "");
  } catch (err) {
    fail(err);
  }
}

$("product-form").addEventListener("submit", createProduct);
$("stream-form").addEventListener("submit", createStream);
$("stream-select").addEventListener("change", (ev) => selectStream(ev.target.value));
$("stream-go-live").addEventListener("click", () => streamAction("start"));
$("stream-end").addEventListener("click", () => streamAction("end"));
$("pin-button").addEventListener("click", pin);
$("drop-open").addEventListener("click", openDrop);
$("drop-close").addEventListener("click", closeDrop);
window.addEventListener("pagehide", () => studio.client && studio.client.close());
wireSignIn(start);
start();
