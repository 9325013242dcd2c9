// The studio's moderation part (contract section 8): the stream's chat as the moderation list,
// one row per message with Delete, Mute and Ban; the chat settings (slow mode, blocked words); the
// shop's bans with Unban; and the stream's moderation log. Used by the stream's seller, the shop's
// admins and its moderators; everything but the chat list shows only while the stream is live.
import { api, claims, duration, el, plainWords, $ } from "./common.js";

const MAX_ROWS = 200;
const LOG_POLL_MS = 10_000;

const ACTION_WORDS = {
  delete_message: "deleted the message",
  mute: "muted",
  ban: "banned",
  unban: "lifted the ban on",
  chat_settings: "changed the chat settings of",
};

function clock(at) {
  const t = typeof at === "number" ? at : Date.parse(at);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : String(at || "");
}

function who(user) {
  if (!user) return { id: "", name: "someone" };
  return { id: user.id || "", name: user.name || user.id || "someone" };
}

/**
 * Wires the moderation part of the studio. `fail(err)` shows an error in the page's banner, `ok()`
 * clears it. Returns what the studio calls as its stream and its chat change.
 */
export function createModeration({ fail, ok }) {
  const list = $("moderation-list");
  const panel = $("moderation-panel");
  const status = $("moderation-status");
  const dialog = $("ban-dialog");
  const state = { stream: null, live: false, loadedFor: null, banTarget: null, logTimer: null, logSoon: null };

  const streamPath = () => `/v1/streams/${encodeURIComponent(state.stream)}`;
  const tenantPath = () => {
    const me = claims();
    return me && me.tid ? `/v1/tenants/${encodeURIComponent(me.tid)}` : null;
  };

  function say(message) {
    status.textContent = message || "";
  }

  // ---- the list ----

  function rowButtons(li) {
    return li.querySelectorAll("button");
  }

  function addMessage(data) {
    const user = who(data.user);
    const li = el("li");
    li.dataset.testid = "moderation-message";
    if (data.id) li.dataset.id = data.id;
    li.dataset.user = user.id;
    li.dataset.name = user.name;
    const line = el("div", "msg");
    line.append(el("span", "who", user.name));
    if (user.id) line.append(el("span", "uid", user.id));
    line.append(el("span", "text", data.text ?? ""));
    const actions = el("div", "mod-actions");
    const button = (testid, text, label, cls) => {
      const b = el("button", cls, text);
      b.type = "button";
      b.dataset.testid = testid;
      b.setAttribute("aria-label", label);
      b.disabled = !state.live || !data.id || (testid !== "delete-message" && !user.id);
      return b;
    };
    actions.append(
      button("delete-message", "Delete", `Delete the message of ${user.name}`, "secondary small"),
      button("mute-user", "Mute", `Mute ${user.name}`, "secondary small"),
      button("ban-user", "Ban", `Ban ${user.name}`, "danger small"),
    );
    li.append(line, actions);
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.children.length > MAX_ROWS) list.firstElementChild.remove();
    if (nearBottom) list.scrollTop = list.scrollHeight;
  }

  function removeMessage(id) {
    for (const li of [...list.children]) {
      if (li.dataset.id === id) li.remove();
    }
  }

  function setMessages(messages) {
    list.replaceChildren();
    for (const m of messages || []) addMessage(m);
    list.scrollTop = list.scrollHeight;
  }

  // ---- actions on a message ----

  async function deleteMessage(li) {
    try {
      await api("DELETE", `${streamPath()}/chat/${encodeURIComponent(li.dataset.id)}`);
      removeMessage(li.dataset.id);
      say(`Deleted a message of ${li.dataset.name}.`);
      ok();
      refreshLog();
    } catch (err) {
      fail(err);
    }
  }

  async function mute(li) {
    const seconds = Number($("mute-seconds").value);
    if (!Number.isInteger(seconds) || seconds < 1) {
      fail({ code: "bad_request", message: "the mute lasts a whole number of seconds, at least 1" });
      return;
    }
    try {
      const answer = await api("POST", `${streamPath()}/mutes`, { user: li.dataset.user, duration_seconds: seconds });
      say(`Muted ${li.dataset.name} for ${duration(seconds * 1000)}${answer && answer.until ? ` (until ${clock(answer.until)})` : ""}.`);
      ok();
      refreshLog();
    } catch (err) {
      fail(err);
    }
  }

  function askBan(li) {
    state.banTarget = { user: li.dataset.user, name: li.dataset.name };
    $("ban-who").textContent = li.dataset.user && li.dataset.user !== li.dataset.name
      ? `${li.dataset.name} (${li.dataset.user})`
      : li.dataset.name;
    $("ban-reason").value = "";
    $("ban-duration").value = "";
    $("ban-confirm").disabled = false;
    dialog.showModal();
    $("ban-reason").focus();
  }

  async function confirmBan() {
    const target = state.banTarget;
    const path = tenantPath();
    if (!target || !path) {
      dialog.close();
      return;
    }
    const body = { user: target.user };
    const reason = $("ban-reason").value.trim();
    if (reason) body.reason = reason;
    const seconds = Number($("ban-duration").value);
    if ($("ban-duration").value && Number.isInteger(seconds) && seconds > 0) body.duration_seconds = seconds;
    $("ban-confirm").disabled = true;
    try {
      const ban = await api("POST", `${path}/bans`, body);
      dialog.close();
      say(`Banned ${target.name} ${ban && ban.until ? `until ${clock(ban.until)}` : "for good"}.`);
      ok();
      refreshLog();
      refreshBans();
    } catch (err) {
      dialog.close();
      fail(err);
    } finally {
      state.banTarget = null;
    }
  }

  list.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    const li = b && b.closest("li");
    if (!li || b.disabled || !state.stream) return;
    if (b.dataset.testid === "delete-message") deleteMessage(li);
    else if (b.dataset.testid === "mute-user") mute(li);
    else if (b.dataset.testid === "ban-user") askBan(li);
  });
  $("ban-confirm").addEventListener("click", confirmBan);
  $("ban-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    state.banTarget = null;
  });

  // ---- chat settings ----

  /** What the status line says once the engine stored the settings (each save says it anew). */
  function settingsSaved(settings) {
    const slow = Number(settings.slow_mode_seconds) || 0;
    const count = (settings.blocked_words || []).length;
    return `Chat settings saved: slow mode ${slow ? `${slow} s` : "off"}, ${count} blocked ${count === 1 ? "entry" : "entries"}.`;
  }

  function fillSettings(settings) {
    $("slow-mode-seconds").value = String(Number(settings && settings.slow_mode_seconds) || 0);
    $("blocked-words").value = ((settings && settings.blocked_words) || []).join("\n");
  }

  async function loadSettings() {
    const stream = state.stream;
    try {
      const settings = await api("GET", `${streamPath()}/chat-settings`);
      if (stream === state.stream) fillSettings(settings);
    } catch (err) {
      fail(err);
    }
  }

  async function saveSettings(ev) {
    ev.preventDefault();
    if (!state.stream) return;
    const slow = Number($("slow-mode-seconds").value || 0);
    if (!Number.isInteger(slow) || slow < 0) {
      fail({ code: "bad_request", message: "slow mode is a whole number of seconds, 0 to turn it off" });
      return;
    }
    const words = $("blocked-words").value.split("\n").map((w) => w.trim()).filter(Boolean);
    say("Saving chat settings…");
    try {
      const settings = await api("PATCH", `${streamPath()}/chat-settings`, { slow_mode_seconds: slow, blocked_words: words });
      fillSettings(settings);
      say(settingsSaved(settings));
      ok();
      refreshLog();
    } catch (err) {
      say("");
      fail(err);
    }
  }
  $("chat-settings-form").addEventListener("submit", saveSettings);

  // ---- bans ----

  async function refreshBans() {
    const path = tenantPath();
    const rows = $("ban-list");
    if (!path) return;
    let items;
    try {
      const answer = await api("GET", `${path}/bans`);
      items = (answer && answer.items) || [];
    } catch (err) {
      rows.replaceChildren(el("li", "muted", `The bans could not be loaded: ${plainWords(err)}`));
      return;
    }
    rows.replaceChildren();
    if (!items.length) rows.append(el("li", "muted", "Nobody is banned."));
    for (const ban of items) {
      const li = el("li", "ban-row");
      li.dataset.user = ban.user;
      const text = `${ban.user} · ${ban.until ? `until ${clock(ban.until)}` : "for good"}`
        + `${ban.reason ? ` · ${ban.reason}` : ""}${ban.by ? ` · by ${ban.by}` : ""}`;
      const unban = el("button", "secondary small", "Unban");
      unban.type = "button";
      unban.dataset.testid = "unban-user";
      unban.setAttribute("aria-label", `Unban ${ban.user}`);
      li.append(el("span", null, text), unban);
      rows.append(li);
    }
  }

  $("ban-list").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    const li = b && b.closest("li");
    const path = tenantPath();
    if (!li || !path || b.dataset.testid !== "unban-user") return;
    b.disabled = true;
    try {
      await api("DELETE", `${path}/bans/${encodeURIComponent(li.dataset.user)}`);
      say(`Lifted the ban on ${li.dataset.user}.`);
      ok();
      refreshLog();
    } catch (err) {
      fail(err);
    }
    refreshBans();
  });

  // ---- the log ----

  async function refreshLog() {
    clearTimeout(state.logSoon);
    state.logSoon = null;
    const stream = state.stream;
    if (!stream || !state.live) return;
    let items;
    try {
      const answer = await api("GET", `${streamPath()}/moderation-log`);
      items = (answer && answer.items) || [];
    } catch {
      // The log shows again with the next refresh; the actions themselves report their errors.
      return;
    }
    if (stream !== state.stream) return;
    const rows = $("moderation-log");
    rows.replaceChildren();
    if (!items.length) rows.append(el("li", "muted", "Nothing yet."));
    for (const entry of items) {
      const li = el("li");
      li.dataset.testid = "moderation-log-entry";
      li.dataset.action = entry.action;
      const time = el("time", "muted", clock(entry.at));
      time.dateTime = entry.at || "";
      const words = ACTION_WORDS[entry.action] || entry.action;
      li.append(time, el("span", null, ` ${entry.actor} ${words} ${entry.target}${entry.reason ? ` · ${entry.reason}` : ""}`));
      rows.append(li);
    }
  }

  /** Refreshes the log shortly (an event may be followed by others of the same action). */
  function refreshLogSoon() {
    if (state.logSoon || !state.live) return;
    state.logSoon = setTimeout(refreshLog, 300);
  }

  // ---- the stream ----

  /** The studio's current stream changed (another one, or its status): show and load what fits. */
  function setStream(stream) {
    const id = stream ? stream.id : null;
    const live = Boolean(stream && stream.status === "live");
    if (id !== state.stream) {
      list.replaceChildren();
      $("moderation-log").replaceChildren();
      say("");
      if (dialog.open) dialog.close();
    }
    state.stream = id;
    state.live = live;
    panel.hidden = !live;
    for (const node of document.querySelectorAll(".mod-only")) node.hidden = !live;
    for (const li of list.children) {
      for (const b of rowButtons(li)) {
        b.disabled = !live || !li.dataset.id || (b.dataset.testid !== "delete-message" && !li.dataset.user);
      }
    }
    clearInterval(state.logTimer);
    state.logTimer = null;
    if (!live) {
      state.loadedFor = null;
      return;
    }
    state.logTimer = setInterval(() => {
      if (!document.hidden) refreshLog();
    }, LOG_POLL_MS);
    if (state.loadedFor !== id) {
      state.loadedFor = id;
      loadSettings();
      refreshBans();
      refreshLog();
    }
  }

  return { setStream, setMessages, addMessage, removeMessage, refreshLogSoon };
}
