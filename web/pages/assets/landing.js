// Landing page: sign-in, the tenant's live streams, and the dev-mode demo button.
import { api, claims, devMode, devToken, el, plainWords, showError, token, wireSignIn, $ } from "./common.js";

async function loadLive() {
  const list = $("live-list");
  const empty = $("live-empty");
  list.replaceChildren();
  const c = claims();
  if (!token() || !c || !c.tid) {
    empty.textContent = token() && c && c.role === "operator"
      ? "Operators belong to no shop: sign in with a shop's token to see its live shows."
      : "Sign in with a token of a shop to see its live shows.";
    empty.hidden = false;
    return;
  }
  try {
    const answer = await api("GET", "/v1/streams?status=live");
    const items = (answer && answer.items) || [];
    empty.hidden = items.length > 0;
    empty.textContent = "No show of this shop is live right now.";
    for (const s of items) {
      const li = el("li");
      const a = el("a", null, s.title || s.id);
      a.href = `/watch/${encodeURIComponent(s.id)}`;
      li.append(a, el("span", "muted", ` · ${s.viewers ?? 0} watching`));
      list.append(li);
    }
    showError("");
  } catch (err) {
    showError(plainWords(err));
  }
}

function rand(n = 6) {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** Opens (or reuses) a named window now, while the click still counts as a user gesture. */
function openWindow(name, left, width) {
  const top = 40;
  const height = Math.max(600, Math.min(900, screen.availHeight - 80));
  return window.open("", name, `popup,left=${left},top=${top},width=${width},height=${height}`);
}

async function runDemo() {
  const status = $("demo-status");
  const button = $("demo-button");
  button.disabled = true;
  showError("");
  // Studio on the left, a phone-sized viewer on the right.
  const viewerWidth = 420;
  const studioWidth = Math.max(640, (screen.availWidth || 1280) - viewerWidth - 16);
  const studioWin = openWindow("liveshop-studio", 0, studioWidth);
  const viewerWin = openWindow("liveshop-viewer", studioWidth + 16, viewerWidth);
  try {
    status.textContent = "Creating a demo shop…";
    const id = rand();
    const operator = await devToken({ role: "operator", sub: "demo-operator", name: "Demo operator" });
    const tenant = await api("POST", "/v1/tenants", { slug: `demo-${id}`, name: `Demo shop ${id}` }, { token: operator });
    const seller = await devToken({ role: "seller", tenant: tenant.id, sub: "demo-seller", name: "Demo seller" });
    status.textContent = "Adding a product and a live show…";
    const product = await api("POST", "/v1/products", {
      sku: `DEMO-${id.toUpperCase()}`, title: "Limited sneaker", price_cents: 4990, currency: "EUR",
    }, { token: seller });
    const stream = await api("POST", "/v1/streams", { title: "Demo show" }, { token: seller });
    await api("POST", `/v1/streams/${encodeURIComponent(stream.id)}/start`, undefined, { token: seller });
    await api("POST", `/v1/streams/${encodeURIComponent(stream.id)}/pin`, { product: product.id }, { token: seller });
    const viewer = await devToken({ role: "viewer", tenant: tenant.id, sub: `viewer-${rand(4)}`, name: "Viewer A" });
    const viewer2 = await devToken({ role: "viewer", tenant: tenant.id, sub: `viewer-${rand(4)}`, name: "Viewer B" });
    const studioUrl = `/studio#token=${encodeURIComponent(seller)}&stream=${encodeURIComponent(stream.id)}`;
    const viewerUrl = `/watch/${encodeURIComponent(stream.id)}#token=${encodeURIComponent(viewer)}`;
    const viewer2Url = `/watch/${encodeURIComponent(stream.id)}#token=${encodeURIComponent(viewer2)}`;
    const opsUrl = `/ops#token=${encodeURIComponent(operator)}`;
    $("demo-studio").href = studioUrl;
    $("demo-viewer").href = viewerUrl;
    $("demo-viewer2").href = viewer2Url;
    $("demo-ops").href = opsUrl;
    $("demo-links").hidden = false;
    if (studioWin) studioWin.location.href = studioUrl;
    if (viewerWin) viewerWin.location.href = viewerUrl;
    status.textContent = studioWin && viewerWin
      ? "The demo runs in two windows: the studio and a viewer. The links open them again."
      : "Your browser blocked the new windows: open the studio and the viewer with the links.";
  } catch (err) {
    if (studioWin) studioWin.close();
    if (viewerWin) viewerWin.close();
    status.textContent = "";
    showError(`The demo could not start: ${plainWords(err)}`);
  } finally {
    button.disabled = false;
  }
}

wireSignIn(loadLive);
loadLive();
devMode().then((dev) => {
  if (!dev) return;
  $("demo").hidden = false;
  $("demo-button").addEventListener("click", runDemo);
});
