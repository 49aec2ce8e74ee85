// The Containers view: every container the user may see, refreshed every
// 5 s while shown (rows patched in place, keyed by type/id), its actions,
// and a logs panel that follows one container's output live. The panel
// keeps following while another view is shown, until it is closed.

import { $, announce, call, el, bytes, confirmInline, reconcile, session } from "./core.js";

const REFRESH_MS = 5000;
const POLL_MS = 2000;
const MAX_LINES = 5000;
const TAILS = [50, 100, 500, 1000];
const POLL_NOTE = "polling every 2 s (this server cannot stream logs)";

const rows = new Map(); // "type/id" -> tr
let list = []; // the last `GET container`
let timer = null;
let loading = null;
let owner = null; // the user whose rows are shown

const keyOf = (c) => `${c.type}/${c.id}`;
const pathOf = (c) => `/container/${encodeURIComponent(c.type)}/${encodeURIComponent(c.id)}`;
const running = (c) => c.state === "running";

export async function mount(section) {
  section.append(
    el("div", { class: "heading-row" },
      el("h2", { id: "containers-title", tabindex: "-1", text: "Containers" }),
      el("p", { id: "containers-status", class: "hint", role: "status" })),
    el("p", { id: "containers-error", class: "error", role: "alert" }),
    el("div", { class: "card ops-card" },
      el("table", { id: "containers", class: "ops" },
        el("caption", { class: "visually-hidden", text: "Containers" }),
        el("thead", {}, el("tr", {},
          ...["Name", "Image", "Type", "State", "Ports", "CPU", "Memory"].map((h, i) => el("th", { scope: "col", class: i > 4 ? "num" : null, text: h })),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Actions" })))),
        el("tbody", { id: "containers-rows" })),
      el("p", { id: "containers-empty", class: "hint", text: "No containers yet. Create one from the App store.", hidden: true })),
    panel());
}

export async function show() {
  if (owner !== session.user?.username) {
    // Another user signed in since: nothing of the last one's stays.
    owner = session.user?.username;
    closeLogs();
    rows.clear();
    list = [];
    $("containers-rows").replaceChildren();
  }
  stopTimer();
  timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  if (logs.state && logs.stick) logs.out.scrollTop = logs.out.scrollHeight;
  await refresh().catch(() => {});
}

export function hide() {
  stopTimer();
}

function stopTimer() {
  if (timer) clearInterval(timer);
  timer = null;
}

/** Read the list again and patch the table; one request at a time. */
export function refresh() {
  if (!loading) loading = load().finally(() => (loading = null));
  return loading;
}

async function load() {
  const started = performance.now();
  try {
    list = await call("GET", "/container");
    $("containers-error").textContent = "";
  } catch (e) {
    $("containers-error").textContent = `Could not list the containers: ${e.message}`;
    throw e;
  }
  // Keep the server's order (by name) without moving rows that are in place;
  // a row an action repainted after this read began keeps the action's state.
  reconcile($("containers-rows"), rows, list, keyOf, newRow, (row, c) => {
    if (!(row._at > started)) paint(row, c);
  });
  $("containers-empty").hidden = list.length > 0;
  if (logs.state) {
    const c = list.find((x) => keyOf(x) === logs.state.key);
    if (c) logs.state.c = c;
    // Started again elsewhere (its app, another tab): follow the new run.
    if (c && running(c) && /^ended/.test(logs.state.ended || "")) startLogs();
  }
}

// ---------------------------------------------------------------- rows

function cell(label, cls, ...children) {
  return el("td", { "data-label": label, class: cls }, ...children);
}

function newRow(c) {
  const name = c.name;
  const act = (verb, cls, onclick) =>
    el("button", { type: "button", class: `${cls} act-${verb.toLowerCase()}`, text: verb, "aria-label": `${verb} ${name}`, onclick });
  const buttons = el("span", { class: "buttons" },
    act("Start", "secondary", () => action(c.type, c.id, "start")),
    act("Stop", "secondary", () => action(c.type, c.id, "stop")),
    act("Restart", "secondary", () => action(c.type, c.id, "restart")),
    el("button", { type: "button", class: "secondary act-logs", text: "Logs", "aria-label": `Logs of ${name}`, "aria-controls": "logs-panel", onclick: () => openLogs(rows.get(keyOf(c))._c) }),
    act("Delete", "danger", (ev) => confirmInline(ev.currentTarget, name, () => remove(c))));
  return el("tr", { "data-container": name },
    el("th", { scope: "row", "data-label": "Name", class: "name", text: name }),
    cell("Image", "image"),
    cell("Type", "type", c.type),
    cell("State", "state-cell", el("span", { class: "state" })),
    cell("Ports", "ports"),
    cell("CPU", "num cpu"),
    cell("Memory", "num mem"),
    cell("Actions", "actions", buttons, el("span", { class: "msg", role: "status" })));
}

/** Bring a row up to date without replacing it (focus stays where it was). */
function paint(row, c) {
  row._c = c;
  const set = (sel, text) => {
    const n = row.querySelector(sel);
    if (n.textContent !== text) n.textContent = text;
  };
  set(".image", c.image || "");
  const chip = row.querySelector(".state");
  const cls = `state state-${c.state === "dead" || c.state === "error" ? "error" : c.state}`;
  if (chip.className !== cls) chip.className = cls;
  set(".state", c.state || "");
  paintPorts(row.querySelector(".ports"), c);
  const on = running(c);
  set(".cpu", on && typeof c.cpu === "number" ? `${c.cpu.toFixed(1)} %` : "–");
  set(".mem", on && typeof c.memory === "number" ? bytes(c.memory) : "–");
  if (!row.classList.contains("busy")) {
    row.querySelector(".act-start").disabled = on;
    row.querySelector(".act-stop").disabled = !on;
    row.querySelector(".act-restart").disabled = !on;
  }
}

/** The published ports: `ports` ([{host, container, protocol}]) when given, else `tcpPort`. */
function portsOf(c) {
  if (Array.isArray(c.ports) && c.ports.length) {
    return c.ports.filter((p) => p && p.host).map((p) => ({ host: p.host, text: `${p.host}→${p.container}/${p.protocol || "tcp"}`, tcp: (p.protocol || "tcp") === "tcp" }));
  }
  return (Array.isArray(c.tcpPort) ? c.tcpPort : []).map((p) => ({ host: p, text: String(p), tcp: true }));
}

function paintPorts(td, c) {
  const ports = portsOf(c);
  const sig = `${running(c)}|${ports.map((p) => p.text).join(",")}`;
  if (td.dataset.sig === sig) return;
  td.dataset.sig = sig;
  const items = ports.map((p) =>
    p.tcp && running(c)
      ? el("a", { href: `${location.protocol}//${location.hostname}:${p.host}/`, target: "_blank", rel: "noopener", "aria-label": `Open port ${p.host} of ${c.name}`, text: p.text })
      : el("span", { text: p.text }));
  td.replaceChildren(...items.flatMap((n, i) => (i ? [" ", n] : [n])));
}

function rowMessage(row, text, bad) {
  const msg = row?.querySelector(".msg");
  if (!msg) return;
  msg.textContent = text;
  msg.classList.toggle("error", !!bad);
}

async function action(type, id, verb) {
  const key = `${type}/${id}`;
  const row = rows.get(key);
  if (!row) return;
  const name = row.dataset.container;
  const pressed = row.querySelector(`.act-${verb}`);
  row.classList.add("busy");
  for (const b of row.querySelectorAll(".buttons button")) b.disabled = true;
  rowMessage(row, `${{ start: "Starting", stop: "Stopping", restart: "Restarting" }[verb]}…`);
  let c = null;
  try {
    c = await call("PUT", `/container/${encodeURIComponent(type)}/${encodeURIComponent(id)}/${verb}`);
    rowMessage(row, "");
    announce(`${name} ${{ start: "started", stop: "stopped", restart: "restarted" }[verb]}.`);
  } catch (e) {
    rowMessage(row, e.message, true);
  }
  row.classList.remove("busy");
  for (const b of row.querySelectorAll(".buttons button")) b.disabled = false;
  // A list read before this answer must not paint the old state over it.
  row._at = performance.now();
  paint(row, c && c.id ? { ...row._c, ...c } : row._c);
  if (c && verb !== "stop" && logs.state?.key === key && logs.state.ended) startLogs();
  (loading || Promise.resolve()).finally(() => refresh().catch(() => {}));
  // Focus stays in the row: on the button pressed when still usable, else the next one that is.
  const lost = !document.activeElement || document.activeElement === document.body;
  if (lost) (pressed.disabled ? row.querySelector(".buttons button:not([disabled])") : pressed)?.focus();
}

async function remove(c) {
  const key = keyOf(c);
  const row = rows.get(key);
  rowMessage(row, "Removing…");
  if (logs.state?.key === key) closeLogs();
  try {
    await call("DELETE", pathOf(c));
    row?.remove();
    rows.delete(key);
    list = list.filter((x) => keyOf(x) !== key);
    $("containers-empty").hidden = rows.size > 0;
    $("containers-status").textContent = `${c.name} removed.`;
    announce(`${c.name} removed.`);
    $("containers-title").focus();
  } catch (e) {
    rowMessage(row, e.message, true);
  }
}

// ---------------------------------------------------------------- logs

/**
 * The logs panel's parts and what it follows: `state` is null when closed,
 * else `{key, c, ctrl, mode: "stream"|"poll", paused, pending, ended}`.
 */
const logs = { state: null, out: null, stick: true, chunks: [], total: 0 };

function panel() {
  const out = el("pre", { id: "logs-output", tabindex: "0", "aria-label": "Output" });
  out.addEventListener("scroll", () => {
    logs.stick = out.scrollHeight - out.scrollTop - out.clientHeight < 8;
  });
  logs.out = out;
  return el("section", { id: "logs-panel", class: "card logs", "aria-labelledby": "logs-title", hidden: true },
    el("div", { class: "heading-row" },
      el("h3", { id: "logs-title", tabindex: "-1", text: "Logs" }),
      el("div", { class: "tools" },
        el("label", { for: "logs-tail", text: "Lines" }),
        el("select", { id: "logs-tail", onchange: () => startLogs() },
          ...TAILS.map((n) => el("option", { value: String(n), text: String(n), selected: n === 100 }))),
        el("button", { type: "button", id: "logs-pause", class: "secondary", text: "Pause", onclick: togglePause }),
        el("button", { type: "button", id: "logs-close", class: "secondary", text: "Close", onclick: () => closeLogs(true) }))),
    el("p", { id: "logs-status", class: "hint logs-status", role: "status" }),
    out);
}

function status(text, bad) {
  const s = $("logs-status");
  s.textContent = text;
  s.classList.toggle("error", !!bad);
  s.classList.toggle("hint", !bad);
}

/** Open the panel on `c` (or bring it into view when it already follows `c`). */
function openLogs(c) {
  if (!c) return;
  const p = $("logs-panel");
  if (!(logs.state && logs.state.key === keyOf(c))) {
    closeLogs();
    logs.state = { key: keyOf(c), c };
    $("logs-title").textContent = `Logs of ${c.name}`;
    logs.out.setAttribute("aria-label", `Output of ${c.name}`);
    p.hidden = false;
    startLogs();
  }
  p.scrollIntoView({ block: "nearest" });
  $("logs-title").focus();
}

/** Close the panel; `focusBack` returns focus to the row's Logs button. */
function closeLogs(focusBack) {
  const s = logs.state;
  if (!s) return;
  s.ctrl?.abort();
  clearTimeout(s.poll);
  logs.state = null;
  $("logs-panel").hidden = true;
  clearOutput();
  if (focusBack) (rows.get(s.key)?.querySelector(".act-logs") || $("containers-title")).focus();
}

function clearOutput() {
  logs.out.replaceChildren();
  logs.chunks = [];
  logs.total = 0;
  logs.stick = true;
}

/** (Re)start following with the chosen tail: the output starts afresh. */
function startLogs() {
  const old = logs.state;
  if (!old) return;
  old.ctrl?.abort();
  clearTimeout(old.poll);
  const s = { key: old.key, c: old.c, ctrl: new AbortController(), paused: false, pending: [], ended: false, mode: "stream" };
  logs.state = s;
  clearOutput();
  $("logs-pause").textContent = "Pause";
  status("connecting…");
  follow(s).catch((e) => {
    if (logs.state === s && e.name !== "AbortError") {
      s.ended = `error: ${e.message}`;
      status(s.ended, true);
    }
  });
}

const tail = () => Number($("logs-tail").value) || 100;

async function follow(s) {
  const url = `/api/v1${pathOf(s.c)}/logs?follow=1&tail=${tail()}`;
  const resp = await fetch(url, { credentials: "same-origin", signal: s.ctrl.signal });
  if (logs.state !== s) return;
  const type = resp.headers.get("content-type") || "";
  if (resp.ok && type.startsWith("text/plain") && resp.body) return read(s, resp.body.getReader());
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // Not JSON: the status says enough.
  }
  if (logs.state !== s) return;
  if (resp.ok && data && typeof data.logs === "string") {
    // A server without `follow` answers the plain lines: poll those instead.
    return startPolling(s, data.logs);
  }
  // A server that does not know `follow` refuses it: poll (which shows any other error).
  if (resp.status === 404 || resp.status === 400) return startPolling(s, null);
  if (resp.status === 401) document.dispatchEvent(new CustomEvent("signed-out"));
  throw new Error(data?.error?.message || `${resp.status} ${resp.statusText}`);
}

async function read(s, reader) {
  const decoder = new TextDecoder();
  let rest = "";
  status("following");
  for (;;) {
    const { value, done } = await reader.read();
    if (logs.state !== s) return reader.cancel().catch(() => {});
    if (done) break;
    rest += decoder.decode(value, { stream: true });
    const cut = rest.lastIndexOf("\n");
    if (cut >= 0) {
      deliver(s, rest.slice(0, cut).split("\n"));
      rest = rest.slice(cut + 1);
    }
  }
  rest += decoder.decode();
  if (rest) deliver(s, [rest]);
  // Why it ended: logging out ends it (the logout's answer may come a moment
  // later: nothing is asked then), and the engine may still say "running"
  // for a moment after the output closed.
  let now = s.c;
  for (let i = 0; i < 4 && now && running(now); i++) {
    await new Promise((r) => setTimeout(r, 400));
    if (!session.user) return closeLogs();
    if (logs.state !== s) return;
    // The list, not the entry: a removed container is no error (nor a 404 in the console).
    let signedOut = false;
    now = await call("GET", "/container").then(
      (all) => all.find((x) => keyOf(x) === s.key) || null,
      (e) => ((signedOut = e.status === 401), s.c));
    if (signedOut) return closeLogs();
    if (logs.state !== s) return;
  }
  refresh().catch(() => {});
  end(s, !now ? "ended: the container was removed" : running(now) ? "ended: the server closed the stream" : "ended: the container stopped");
}

/** The stream is over: say why (after the lines that wait, when paused). */
function end(s, why) {
  s.ended = why;
  if (!s.paused) status(why);
}

/** Polling for a server without `follow`: new lines are what follows the last ones seen. */
function startPolling(s, first) {
  s.mode = "poll";
  let seen = [];
  const take = (text) => {
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    deliver(s, newLines(seen, lines));
    seen = lines;
  };
  const tick = async () => {
    if (!session.user) return closeLogs();
    if (logs.state !== s) return;
    try {
      const [data, c] = await Promise.all([
        call("GET", `${pathOf(s.c)}/logs?tail=${tail()}`),
        call("GET", pathOf(s.c)).catch((e) => (e.status === 404 ? null : s.c)),
      ]);
      if (logs.state !== s) return;
      take(data.logs || "");
      if (!c || !running(c)) return end(s, c ? "ended: the container stopped" : "ended: the container was removed");
      if (!s.paused) status(`following – ${POLL_NOTE}`);
    } catch (e) {
      if (logs.state !== s) return;
      status(`error: ${e.message} – ${POLL_NOTE}`, true);
    }
    s.poll = setTimeout(tick, POLL_MS);
  };
  if (first !== null) take(first);
  status(`following – ${POLL_NOTE}`);
  s.poll = setTimeout(tick, first === null ? 0 : POLL_MS);
}

/** The lines of `now` after the longest run that ends `before` and starts `now`. */
export function newLines(before, now) {
  for (let k = Math.min(before.length, now.length); k > 0; k--) {
    let same = true;
    for (let i = 0; i < k && same; i++) same = before[before.length - k + i] === now[i];
    if (same) return now.slice(k);
  }
  return now;
}

function deliver(s, lines) {
  if (!lines.length) return;
  // An LXC console is a terminal: its lines end in "\r\n".
  lines = lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (!session.user) return closeLogs();
  if (s.paused) {
    s.pending.push(...lines);
    if (s.pending.length > MAX_LINES) s.pending.splice(0, s.pending.length - MAX_LINES);
    s.waiting += lines.length;
    status(`paused (${s.waiting} new line${s.waiting === 1 ? "" : "s"})`);
    return;
  }
  append(lines);
}

/** Add lines to the output, keeping at most MAX_LINES, at the bottom when it was there. */
function append(lines) {
  const out = logs.out;
  const node = document.createTextNode(lines.join("\n") + "\n");
  out.append(node);
  logs.chunks.push({ node, n: lines.length });
  logs.total += lines.length;
  while (logs.total > MAX_LINES) {
    const first = logs.chunks[0];
    const extra = logs.total - MAX_LINES;
    if (first.n <= extra) {
      first.node.remove();
      logs.chunks.shift();
      logs.total -= first.n;
    } else {
      let at = 0;
      for (let i = 0; i < extra; i++) at = first.node.data.indexOf("\n", at) + 1;
      first.node.data = first.node.data.slice(at);
      first.n -= extra;
      logs.total -= extra;
    }
  }
  if (logs.stick) out.scrollTop = out.scrollHeight;
}

function togglePause() {
  const s = logs.state;
  if (!s) return;
  const button = $("logs-pause");
  s.paused = !s.paused;
  button.textContent = s.paused ? "Resume" : "Pause";
  if (s.paused) {
    s.waiting = 0;
    return status("paused (0 new lines)");
  }
  const waiting = s.pending;
  s.pending = [];
  if (waiting.length) append(waiting);
  status(s.ended || (s.mode === "poll" ? `following – ${POLL_NOTE}` : "following"), /^error/.test(s.ended || ""));
}
