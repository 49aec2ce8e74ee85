// What every view shares: API calls, building elements, times shown as
// "2 min ago", announcements for screen readers, and the one task stream
// (SSE) that keeps task rows and progress bars live in every view.

export const API = "/api/v1";
export const $ = (id) => document.getElementById(id);

/** The signed-in user (`{username, isAdmin, ...}`), set by main.js. */
export const session = { user: null };

/** An API error: `status`, `reason` and the server's message. */
export class ApiError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

/** Call the API; resolves with the JSON answer, rejects with an ApiError. */
export async function call(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(API + path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    if (resp.status === 401) document.dispatchEvent(new CustomEvent("signed-out"));
    throw new ApiError(resp.status, e.reason || "", e.message || resp.statusText || "request failed");
  }
  return data;
}

/** The field a server error names first: `tag: ...`, `network.port[0]: ...` → `tag`, `network`. */
export function fieldOf(message) {
  return (String(message).match(/^([A-Za-z0-9_-]+)[.[:]/) || [])[1] || null;
}

/** `el("button", {type: "button", text: "Go", onclick: fn}, child, ...)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

/** Say `text` to screen readers (a polite live region). */
export function announce(text) {
  const region = $("announce");
  region.textContent = "";
  // A change of text is what a live region reads; clear first so the
  // same message twice is read twice.
  requestAnimationFrame(() => (region.textContent = text));
}

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (typeof n !== "number" || !isFinite(n) || n < 0) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** The exact time, in the reader's locale (one formatter: they are costly to make). */
const EXACT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A time as "2 min ago", the exact time on hover; kept current by `refreshTimes`. */
export function ago(when) {
  const date = when instanceof Date ? when : new Date(typeof when === "number" && when < 1e12 ? when * 1000 : when);
  if (isNaN(date)) return el("span", { text: "" });
  const node = el("time", { datetime: date.toISOString(), title: EXACT.format(date) });
  node.textContent = relative(date);
  return node;
}

function relative(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  const future = s < 0;
  const a = Math.abs(s);
  let text;
  if (a < 45) return future ? "in a moment" : "just now";
  if (a < 3600) text = `${Math.round(a / 60)} min`;
  else if (a < 86400) text = `${Math.round(a / 3600)} h`;
  else if (a < 30 * 86400) text = `${Math.round(a / 86400)} d`;
  else return date.toLocaleDateString();
  return future ? `in ${text}` : `${text} ago`;
}

/** Bring every shown "… ago" up to date (main.js calls it every 30 s). */
export function refreshTimes() {
  for (const t of document.querySelectorAll("time[datetime]")) {
    const text = relative(new Date(t.getAttribute("datetime")));
    if (t.textContent !== text) t.textContent = text;
  }
}

/**
 * Keep `body`'s rows in the order of `items`, keyed by `keyOf`: a row is
 * made once (`make(item)`), brought up to date in place (`update(row,
 * item)`), moved only when out of place, and removed when its item is
 * gone. `rows` (key → row) persists between calls.
 */
export function reconcile(body, rows, items, keyOf, make, update) {
  const seen = new Set();
  let prev = null;
  for (const item of items) {
    const key = keyOf(item);
    seen.add(key);
    let row = rows.get(key);
    if (!row) rows.set(key, (row = make(item)));
    update(row, item);
    const want = prev ? prev.nextSibling : body.firstChild;
    if (want !== row) body.insertBefore(row, want);
    prev = row;
  }
  for (const [key, row] of rows) {
    if (!seen.has(key)) {
      row.remove();
      rows.delete(key);
    }
  }
}

/**
 * Ask inline before a destructive action: `button` gives way to "Remove
 * NAME?" with `Confirm remove NAME` and `Keep NAME`; `then` runs on confirm.
 */
export function confirmInline(button, name, then) {
  const keep = el("button", { type: "button", class: "secondary", text: "Keep", "aria-label": `Keep ${name}` });
  const yes = el("button", { type: "button", class: "danger", text: "Confirm remove", "aria-label": `Confirm remove ${name}` });
  const box = el("span", { class: "confirm", role: "group", "aria-label": `Remove ${name}?` },
    el("span", { class: "ask", text: `Remove ${name}?` }), yes, keep);
  const back = () => {
    box.replaceWith(button);
    button.focus();
  };
  keep.addEventListener("click", back);
  box.addEventListener("keydown", (e) => e.key === "Escape" && back());
  yes.addEventListener("click", async () => {
    yes.disabled = keep.disabled = true;
    await then();
    if (box.isConnected) box.replaceWith(button);
  });
  button.replaceWith(box);
  keep.focus();
}

// ---------------------------------------------------------------- tasks

/**
 * The caller's tasks, kept live from `background/events?logs=1`: `task`
 * events update `tasks`, `deleted` removes, `log` lines go to listeners.
 * Listeners get `(kind, payload)`: `("task", task)`, `("deleted", id)`,
 * `("log", {id, ts, level, message})`, `("reload")` after a gap.
 */
/** How far along a task's state is: a later one is never replaced by an earlier one. */
const STAGE = { waiting: 0, running: 1, completed: 2, error: 2 };

export const hub = {
  tasks: new Map(),
  deleted: new Set(),
  listeners: new Set(),
  source: null,

  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  },

  emit(kind, payload) {
    for (const l of this.listeners) l(kind, payload);
  },

  upsert(task) {
    if (this.deleted.has(task.id)) return;
    // A submit's answer can arrive after the stream already told of the
    // task's later states (a task that ends at once): never step back.
    const known = this.tasks.get(task.id);
    if (known && STAGE[known.state] > STAGE[task.state]) return;
    this.tasks.set(task.id, task);
    this.emit("task", task);
  },

  forget(id) {
    this.deleted.add(id);
    if (this.tasks.delete(id)) this.emit("deleted", id);
  },

  async reload() {
    this.fill(await call("GET", "/background/"));
  },

  /** Take `list` (an answer of `GET background/`) as the caller's tasks. */
  fill(list) {
    this.tasks.clear();
    for (const t of list) if (!this.deleted.has(t.id)) this.tasks.set(t.id, t);
    this.emit("reload");
  },

  start() {
    this.stop();
    const source = new EventSource(`${API}/background/events?logs=1`);
    source.addEventListener("task", (m) => this.upsert(JSON.parse(m.data)));
    source.addEventListener("deleted", (m) => this.forget(JSON.parse(m.data).id));
    source.addEventListener("log", (m) => this.emit("log", JSON.parse(m.data)));
    source.addEventListener("lagged", () => this.reload().catch(() => {}));
    // The browser reconnects by itself after a drop; events may have been
    // missed meanwhile, so the list is read again.
    let opened = false;
    source.addEventListener("open", () => {
      if (opened && this.source === source) this.reload().catch(() => {});
      opened = true;
    });
    this.source = source;
  },

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    this.tasks.clear();
  },
};

/** Submit a task; resolves with it (already in `hub`), rejects with an ApiError. */
export async function submitTask(category, params) {
  const task = await call("POST", `/background/${encodeURIComponent(category)}`, params);
  hub.upsert(task);
  return task;
}

/** A task's percentage as a bar's value: null while indeterminate. */
export function percentOf(task) {
  if (task.state === "completed") return 100;
  return task.progress >= 0 ? task.progress : null;
}

/**
 * A live progress line for one task: its bar, its state and detail; kept
 * up to date from the hub until the task ends. `label` names the bar.
 * The element has `data-task-id` and `data-state`.
 */
export function taskBar(given, label) {
  // What the stream already said of it, if it is further along.
  const task = hub.tasks.get(given.id) || given;
  const bar = el("progress", { max: "100", "aria-label": label || `Progress of task ${task.id}` });
  const text = el("span", { class: "task-text" });
  const node = el("span", { class: "taskbar", "data-task-id": String(task.id) }, bar, text);
  const paint = (t) => {
    const v = percentOf(t);
    if (v === null) bar.removeAttribute("value");
    else bar.value = v;
    node.dataset.state = t.state;
    text.textContent = t.state === "error" ? `error: ${t.detail_state || ""}` : t.state === "completed" ? "done" : t.detail_state || (v === null ? t.state : `${v}%`);
  };
  paint(task);
  if (task.state === "completed" || task.state === "error") {
    // Already over: say so once the caller has placed the bar.
    setTimeout(() => node.dispatchEvent(new CustomEvent("task-end", { detail: task, bubbles: true })), 0);
    return node;
  }
  const off = hub.on((kind, t) => {
    if (kind === "task" && t.id === task.id) {
      paint(t);
      if (t.state === "completed" || t.state === "error") {
        off();
        node.dispatchEvent(new CustomEvent("task-end", { detail: t, bubbles: true }));
      }
    }
  });
  return node;
}
