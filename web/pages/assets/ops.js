// Operator page (`/ops`): nodes (`/v1/admin/cluster`), actors by kind (`/v1/admin/actors`), and
// connections, deliveries/s, claims/s and restarts (`/v1/admin/stats`), polled every 2 s and
// drawn as small live charts.
import { drawLine } from "./chart.js";
import { api, claims, devMode, devToken, el, plainWords, setToken, showError, token, wireSignIn, $ } from "./common.js";

const EVERY_MS = 2000;
const POINTS = 60;

const ops = {
  timer: null,
  last: null,
  series: { connections: [], deliveries: [], claims: [] },
};

function push(name, value) {
  const s = ops.series[name];
  s.push(value);
  while (s.length > POINTS) s.shift();
}

function renderNodes(cluster) {
  const rows = $("node-rows");
  rows.replaceChildren();
  for (const n of (cluster && cluster.nodes) || []) {
    const tr = el("tr");
    const name = el("td", null, n.id + (n.id === cluster.self ? " (this node)" : ""));
    const started = el("td", null, n.started_at ? new Date(n.started_at).toLocaleString() : "");
    tr.append(name, started, el("td", "num", String(n.connections ?? 0)), el("td", "num", String(n.streams_owned ?? 0)));
    rows.append(tr);
  }
}

function renderActors(actors) {
  const byKind = new Map();
  for (const a of (actors && actors.items) || []) {
    const k = byKind.get(a.kind) || { live: 0, restarts: 0, mailbox: 0 };
    k.live += 1;
    k.restarts += Number(a.restarts) || 0;
    k.mailbox += Number(a.mailbox_depth) || 0;
    byKind.set(a.kind, k);
  }
  const rows = $("actor-rows");
  rows.replaceChildren();
  for (const [kind, k] of [...byKind.entries()].sort()) {
    const tr = el("tr");
    tr.append(el("td", null, kind), el("td", "num", String(k.live)), el("td", "num", String(k.restarts)), el("td", "num", String(k.mailbox)));
    rows.append(tr);
  }
}

function renderStats(stats) {
  const now = performance.now();
  const connections = Number(stats.connections) || 0;
  let deliveries = 0;
  let claimRate = 0;
  if (ops.last) {
    const secs = Math.max(0.001, (now - ops.last.at) / 1000);
    deliveries = Math.max(0, (Number(stats.events_delivered) - ops.last.delivered) / secs);
    claimRate = Math.max(0, (Number(stats.claims) - ops.last.claims) / secs);
  }
  ops.last = { at: now, delivered: Number(stats.events_delivered) || 0, claims: Number(stats.claims) || 0 };
  push("connections", connections);
  push("deliveries", deliveries);
  push("claims", claimRate);
  $("ops-connections").textContent = String(connections);
  $("ops-deliveries").textContent = deliveries >= 10 ? String(Math.round(deliveries)) : deliveries.toFixed(1);
  $("ops-claims").textContent = claimRate >= 10 ? String(Math.round(claimRate)) : claimRate.toFixed(1);
  $("ops-restarts").textContent = String(Number(stats.restarts) || 0);
  drawLine($("chart-connections"), ops.series.connections);
  drawLine($("chart-deliveries"), ops.series.deliveries, { color: "#0d6b2f", unit: "/s" });
  drawLine($("chart-claims"), ops.series.claims, { color: "#8a4b00", unit: "/s" });
}

async function poll() {
  try {
    const [cluster, actors, stats] = await Promise.all([
      api("GET", "/v1/admin/cluster"),
      api("GET", "/v1/admin/actors"),
      api("GET", "/v1/admin/stats"),
    ]);
    renderNodes(cluster);
    renderActors(actors);
    renderStats(stats);
    $("updated").textContent = `Last update ${new Date().toLocaleTimeString()}.`;
    showError("");
  } catch (err) {
    showError(plainWords(err));
    if (err && (err.code === "unauthorized" || err.code === "forbidden")) stop();
  }
}

function stop() {
  clearInterval(ops.timer);
  ops.timer = null;
}

function start() {
  stop();
  ops.last = null;
  for (const s of Object.values(ops.series)) s.length = 0;
  const signedIn = Boolean(token());
  $("dashboard").hidden = !signedIn;
  if (!signedIn) return;
  const c = claims();
  if (c && c.role !== "operator") {
    showError("This page is for operators: sign in with an operator token.");
    return;
  }
  poll();
  ops.timer = setInterval(poll, EVERY_MS);
}

let dev = false;
const rerender = wireSignIn(() => {
  $("dev-operator").hidden = !dev || Boolean(token());
  start();
});
devMode().then((on) => {
  dev = on;
  const button = $("dev-operator");
  button.hidden = !dev || Boolean(token());
  if (!dev) return;
  button.addEventListener("click", async () => {
    try {
      setToken(await devToken({ role: "operator", sub: "dev-operator", name: "Dev operator" }));
      button.hidden = true;
      rerender();
      start();
    } catch (err) {
      showError(plainWords(err));
    }
  });
});
start();
