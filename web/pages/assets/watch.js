// Viewer page (`/watch/{stream}`): joins the stream over the SDK, renders the snapshot and the
// live events (chat, viewers, reactions, pinned product, drop with its remaining count), claims,
// and shows the hold's countdown until a `claim_update` says paid or expired. Moderation reaches it
// as `chat_deleted` events (the message goes), chat refusals (`muted`, `blocked`, slow mode's
// `rate_limited`) in the error banner, and a ban's 1008 close (the removal banner).
import { connect } from "/sdk/liveshop.js";
import { api, byTestId, claims, el, plainWords, price, removalWords, showError, token, wireSignIn, wsUrl, $ } from "./common.js";

const streamId = decodeURIComponent(location.pathname.replace(/^\/watch\//, "").replace(/\/$/, ""));
const MAX_CHAT = 200;

const view = {
  client: null,
  everLive: false,
  interrupted: false,
  products: new Map(),
  productsLoadedAt: 0,
  productsLoading: null,
  drops: new Map(),
  currentDrop: null,
  claim: null,
  hearts: 0,
  ended: false,
  countdown: null,
  removed: false,
  mutedUntil: 0,
  mutedTimer: null,
};

// ---- connection state ----

function setConnection(word) {
  const node = byTestId("connection-state");
  node.textContent = word;
  node.className = `state ${word}`;
}

function onState(state) {
  if (state === "live") {
    setConnection(view.everLive && view.interrupted ? "resumed" : "live");
    view.everLive = true;
    view.interrupted = false;
    if (byTestId("error-banner").dataset.kind === "connection") showError("");
  } else if (state === "reconnecting" || (state === "connecting" && view.everLive)) {
    view.interrupted = true;
    setConnection("reconnecting");
  } else if (state === "connecting") {
    setConnection("connecting");
  } else if (state === "closed") {
    setConnection("closed");
    const removal = removalWords(view.client && view.client.lastClose);
    if (removal) {
      setRemoved(removal);
    } else {
      connectionError("The connection was closed. Reload the page to connect again.");
    }
  }
}

function connectionError(message) {
  if (view.removed) return;
  showError(message);
  byTestId("error-banner").dataset.kind = "connection";
}

/** The engine closed the session for good (a ban, or an expired token): say so and stop. */
function setRemoved(message) {
  view.removed = true;
  stopMutedCountdown();
  showError(message);
  byTestId("error-banner").dataset.kind = "removed";
  for (const id of ["chat-input", "chat-send", "react-heart", "claim-button", "bid-button"]) {
    byTestId(id).disabled = true;
  }
}

function actionError(err) {
  if (view.removed) return;
  if (err && err.code === "muted" && Number(err.retry_after_ms) > 0) {
    startMutedCountdown(Number(err.retry_after_ms));
    return;
  }
  stopMutedCountdown();
  showError(plainWords(err));
  byTestId("error-banner").dataset.kind = "action";
}

/** Shows "You are muted … for N more" and counts down; the banner clears when the mute lapses. */
function startMutedCountdown(ms) {
  stopMutedCountdown();
  view.mutedUntil = Date.now() + ms;
  const tick = () => {
    const left = view.mutedUntil - Date.now();
    if (left <= 0) {
      stopMutedCountdown();
      if (byTestId("error-banner").dataset.kind === "muted") showError("");
      return;
    }
    showError(plainWords({ code: "muted", retry_after_ms: left }));
    byTestId("error-banner").dataset.kind = "muted";
  };
  tick();
  view.mutedTimer = setInterval(tick, 1000);
}

function stopMutedCountdown() {
  clearInterval(view.mutedTimer);
  view.mutedTimer = null;
}

// ---- products ----

/**
 * Loads the shop's products once; `force` loads them again (at most every 2 s) when an unknown
 * product shows up. Callers share the load in flight.
 */
function loadProducts(force = false) {
  const fresh = Date.now() - view.productsLoadedAt < 2000;
  if (view.productsLoading && (!force || fresh)) return view.productsLoading;
  view.productsLoadedAt = Date.now();
  view.productsLoading = api("GET", "/v1/products")
    .then((answer) => {
      for (const p of (answer && answer.items) || []) view.products.set(p.id, p);
    })
    .catch(() => {
      // The product names are a nicety; ids still show.
    });
  return view.productsLoading;
}

async function productLabel(id) {
  if (!view.products.has(id)) await loadProducts(true);
  const p = view.products.get(id);
  return p ? `${p.title} · ${price(p.price_cents, p.currency)}` : id;
}

// ---- rendering ----

async function renderPinned(productId) {
  const node = byTestId("pinned-product");
  if (!productId) {
    node.textContent = "nothing pinned";
    return;
  }
  node.textContent = await productLabel(productId);
}

function addChat(data) {
  const list = byTestId("chat-list");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const li = el("li");
  li.dataset.testid = "chat-message";
  if (data.id) li.dataset.id = data.id;
  li.append(el("span", "who", (data.user && (data.user.name || data.user.id)) || "someone"), el("span", "text", data.text));
  list.append(li);
  while (list.children.length > MAX_CHAT) list.firstElementChild.remove();
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

/** A moderator deleted a message: it goes from the list (a replay may name one never shown). */
function removeChat(id) {
  for (const li of byTestId("chat-list").children) {
    if (li.dataset.id === id) li.remove();
  }
}

function setViewers(count) {
  byTestId("viewer-count").textContent = String(Number(count) || 0);
}

async function renderDrop() {
  const card = byTestId("drop-card");
  const drop = view.currentDrop ? view.drops.get(view.currentDrop) : null;
  if (!drop) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  byTestId("drop-remaining").textContent = String(Math.max(0, Number(drop.remaining) || 0));
  const button = byTestId("claim-button");
  const closed = drop.status === "closed" || view.ended;
  button.disabled = closed;
  button.textContent = closed ? "Drop closed" : "Claim one";
  const p = view.products.get(drop.product);
  $("drop-title").textContent = p ? p.title : await productLabel(drop.product);
  const again = view.products.get(drop.product);
  $("drop-price").textContent = again ? `· ${price(again.price_cents, again.currency)}` : "";
  renderClaim();
}

function renderClaim() {
  const node = byTestId("claim-status");
  const drop = view.currentDrop ? view.drops.get(view.currentDrop) : null;
  const claim = view.claim && drop && view.claim.drop === drop.id ? view.claim : null;
  clearInterval(view.countdown);
  view.countdown = null;
  node.className = "claim-status";
  if (!claim) {
    if (drop && (drop.status === "sold_out" || Number(drop.remaining) === 0)) {
      node.textContent = "sold out";
      node.classList.add("sold-out");
    } else {
      node.textContent = "";
    }
    return;
  }
  if (claim.status === "reserved") {
    const tick = () => {
      const left = Math.max(0, Math.round((Date.parse(claim.expires_at) - Date.now()) / 1000));
      const mm = Math.floor(left / 60);
      const ss = String(left % 60).padStart(2, "0");
      node.textContent = left > 0 ? `reserved · ${mm}:${ss} left to pay` : "reserved · the hold is ending";
    };
    tick();
    view.countdown = setInterval(tick, 1000);
  } else if (claim.status === "paid") {
    node.textContent = "paid · thank you!";
    node.classList.add("paid");
  } else if (claim.status === "expired") {
    node.textContent = "expired · the hold ran out";
    node.classList.add("expired");
  } else {
    node.textContent = claim.status;
  }
}

function setEnded(ended) {
  view.ended = ended;
  $("stream-ended").hidden = !ended;
  byTestId("chat-send").disabled = ended;
  renderDrop();
}

function pickCurrentDrop() {
  // The newest drop that is not closed, else keep the one shown.
  let chosen = null;
  for (const drop of view.drops.values()) {
    if (drop.status !== "closed") chosen = drop.id;
  }
  if (chosen) view.currentDrop = chosen;
}

async function restoreClaim() {
  if (!view.currentDrop) return;
  try {
    const answer = await api("GET", "/v1/claims");
    const mine = ((answer && answer.items) || []).filter((c) => c.drop === view.currentDrop);
    if (mine.length && (!view.claim || view.claim.drop !== view.currentDrop)) {
      view.claim = mine[mine.length - 1];
      renderClaim();
    }
  } catch {
    // The claim status shows again with the next claim_update.
  }
}

async function applySnapshot(snapshot) {
  if (!snapshot) return;
  const stream = snapshot.stream || {};
  $("stream-title").textContent = stream.title || "Live show";
  document.title = `${stream.title || "Watch"} · Liveshop`;
  setViewers(snapshot.viewers ?? stream.viewers ?? 0);
  const list = byTestId("chat-list");
  list.replaceChildren();
  for (const message of snapshot.chat || []) addChat(message);
  list.scrollTop = list.scrollHeight;
  view.drops.clear();
  for (const drop of snapshot.drops || []) view.drops.set(drop.id, { ...drop });
  pickCurrentDrop();
  setEnded(stream.status === "ended");
  await renderPinned(snapshot.pinned ?? stream.pinned ?? null);
  await renderDrop();
  restoreClaim();
}

function onEvent(frame) {
  const data = frame.data || {};
  switch (frame.kind) {
    case "chat":
      addChat(data);
      break;
    case "chat_deleted":
      if (data.id) removeChat(data.id);
      break;
    case "viewers":
      setViewers(data.count);
      break;
    case "reactions": {
      const counts = data.counts || {};
      view.hearts += Number(counts.heart) || 0;
      $("reaction-total").textContent = view.hearts ? `♥ ${view.hearts}` : "";
      break;
    }
    case "pinned":
      renderPinned(data.product);
      break;
    case "status":
      setEnded(data.status === "ended");
      break;
    case "drop_opened":
      view.drops.set(data.id, { ...data });
      view.currentDrop = data.id;
      renderDrop();
      break;
    case "inventory": {
      const drop = view.drops.get(data.drop);
      if (drop) {
        drop.remaining = data.remaining;
        if (drop.status === "sold_out" && Number(data.remaining) > 0) drop.status = "open";
        if (data.drop === view.currentDrop) renderDrop();
      }
      break;
    }
    case "sold_out": {
      const drop = view.drops.get(data.drop);
      if (drop) {
        drop.status = "sold_out";
        drop.remaining = 0;
        if (data.drop === view.currentDrop) renderDrop();
      }
      break;
    }
    case "drop_closed": {
      const drop = view.drops.get(data.drop);
      if (drop) {
        drop.status = "closed";
        if (data.drop === view.currentDrop) renderDrop();
      }
      break;
    }
    default:
      break;
  }
}

function onFrame(frame) {
  if (!frame || typeof frame !== "object") return;
  if (frame.type === "joined" && frame.stream === streamId && frame.snapshot) {
    applySnapshot(frame.snapshot);
  } else if (frame.type === "claim_update" && frame.claim) {
    if (!view.claim || view.claim.id === frame.claim.id || frame.claim.drop === view.currentDrop) {
      view.claim = frame.claim;
      renderClaim();
    }
  }
}

// ---- actions ----

async function claimOne() {
  const drop = view.currentDrop ? view.drops.get(view.currentDrop) : null;
  if (!drop || !view.client) return;
  const button = byTestId("claim-button");
  button.disabled = true;
  try {
    const claim = await view.client.claim(drop.id, 1);
    view.claim = claim;
    showError("");
    renderClaim();
  } catch (err) {
    actionError(err);
    if (err && err.code === "sold_out") {
      drop.status = "sold_out";
      renderClaim();
    }
  } finally {
    button.disabled = drop.status === "closed" || view.ended;
  }
}

async function sendChat(ev) {
  ev.preventDefault();
  const input = byTestId("chat-input");
  const text = input.value.trim();
  if (!text || !view.client) return;
  try {
    await view.client.chat(streamId, text);
    // Clear what was sent, not what the viewer typed since (the answer can come after that).
    if (input.value.trim() === text) input.value = "";
    const kind = byTestId("error-banner").dataset.kind;
    if (kind === "action" || kind === "muted") {
      stopMutedCountdown();
      showError("");
    }
  } catch (err) {
    actionError(err);
  }
}

async function react() {
  if (!view.client) return;
  try {
    await view.client.react(streamId, "heart");
  } catch (err) {
    actionError(err);
  }
}

// ---- start ----

async function start() {
  if (view.client) {
    view.client.close();
    view.client = null;
  }
  const signedIn = Boolean(token());
  $("signin").hidden = signedIn;
  if (!signedIn) {
    setConnection("connecting");
    return;
  }
  if (!streamId) {
    showError("This address names no show.");
    return;
  }
  const c = claims();
  if (c && c.role === "operator") {
    showError("Operators belong to no shop: sign in with a viewer's token of this show's shop.");
  }
  loadProducts();
  setConnection("connecting");
  if (view.removed) {
    view.removed = false;
    showError("");
    for (const id of ["chat-input", "chat-send", "react-heart"]) byTestId(id).disabled = false;
  }
  stopMutedCountdown();
  // A chat refused by slow mode is said at once ("Slow down: N s"), not sent again by itself later.
  const client = connect({ url: wsUrl(), token: token(), retryRateLimited: false });
  view.client = client;
  client.on("state", onState);
  client.on("frame", onFrame);
  try {
    const joined = await client.join(streamId, onEvent);
    if (joined && joined.snapshot) await applySnapshot(joined.snapshot);
  } catch (err) {
    if (view.removed) return;
    showError(err && err.code === "not_found" ? "This show does not exist in your shop." : plainWords(err));
  }
}

byTestId("react-heart").addEventListener("click", react);
byTestId("claim-button").addEventListener("click", claimOne);
$("chat-form").addEventListener("submit", sendChat);
window.addEventListener("pagehide", () => view.client && view.client.close());
wireSignIn(start);
start();
