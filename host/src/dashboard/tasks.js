// The tasks view: a submit form per category, built from the params schema
// each plugin gives (read from the OpenAPI document), and the caller's
// tasks, newest first, kept live from the task stream. Rows are patched in
// place, so an update never moves the page; a task opened shows its log.

import { $, ago, announce, call, el, fieldOf, hub, percentOf } from "./core.js";
import * as form from "./form.js";

const categories = new Map(); // name -> {summary, schema, deletable}
const rows = new Map(); // id -> li
const opened = new Set(); // ids whose log is shown
let controls = new Map(); // field -> control
let loaded = false;

export async function mount(section) {
  section.append(
    el("h2", { id: "tasks-title", tabindex: "-1", text: "Tasks" }),
    el("div", { class: "card" },
      el("h3", { id: "submit-title", text: "New task" }),
      el("div", { class: "field" },
        el("label", { for: "submit-category", text: "Category" }),
        el("select", { id: "submit-category", onchange: renderForm })),
      el("p", { id: "submit-summary", class: "hint" }),
      el("form", { id: "submit-form", novalidate: true, onsubmit: submit },
        el("div", { id: "submit-fields" }),
        el("p", { id: "submit-error", class: "error", role: "alert" }),
        el("p", { id: "submit-ok", class: "ok", role: "status" }),
        el("button", { type: "submit", text: "Submit" }))),
    el("div", { class: "card" },
      el("div", { class: "heading-row" },
        el("h3", { id: "tasks-list-title", text: "Your tasks" }),
        el("div", { class: "tools" },
          el("label", { for: "filter-category", text: "Category" }),
          el("select", { id: "filter-category", onchange: renderAll }, el("option", { value: "", text: "All" })),
          el("button", { type: "button", id: "delete-finished", class: "secondary", text: "Delete finished", onclick: deleteFinished }))),
      el("p", { id: "tasks-status", class: "hint", role: "status", "aria-live": "polite" }),
      el("p", { id: "tasks-error", class: "error", role: "alert" }),
      el("ul", { id: "tasks", class: "tasks", "aria-labelledby": "tasks-list-title" }),
      el("p", { id: "tasks-empty", class: "hint", text: "No tasks." })));
  hub.on(onEvent);
  renderAll();
}

export async function show() {
  if (!loaded) {
    loaded = true;
    await loadCategories().catch((e) => ($("submit-error").textContent = e.message));
  }
}

function onEvent(kind, payload) {
  if (kind === "reload") return renderAll();
  if (kind === "deleted") {
    rows.get(payload)?.remove();
    rows.delete(payload);
    opened.delete(payload);
    $("tasks-empty").hidden = rows.size > 0;
    return;
  }
  if (kind === "log") {
    const box = rows.get(payload.id)?.querySelector(".log ol");
    if (box) box.append(logLine(payload));
    return;
  }
  if (kind === "task") {
    const task = payload;
    const row = rows.get(task.id);
    const before = row?.dataset.state;
    if (row) paint(row, task);
    else insert(task);
    if (before && before !== task.state && (task.state === "completed" || task.state === "error")) {
      $("tasks-status").textContent = `Task ${task.id} (${task.category}) ${task.state}.`;
    }
  }
}

// ---------------------------------------------------------------- the form

async function loadCategories() {
  const doc = await call("GET", "/openapi.json");
  categories.clear();
  for (const item of Object.values(doc.paths || {})) {
    const op = item.post;
    if (!op || !op["x-stevedore-category"]) continue;
    const schema = op.requestBody?.content?.["application/json"]?.schema || {};
    categories.set(op["x-stevedore-category"], {
      summary: op.summary || "",
      deletable: !!op["x-stevedore-deletable"],
      schema,
    });
  }
  const names = [...categories.keys()].sort();
  const filter = $("filter-category");
  const keep = filter.value;
  $("submit-category").replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  filter.replaceChildren(el("option", { value: "", text: "All" }), ...names.map((n) => el("option", { value: n, text: n })));
  filter.value = names.includes(keep) ? keep : "";
  renderForm();
}

function renderForm() {
  const category = categories.get($("submit-category").value);
  const fields = $("submit-fields");
  controls = new Map();
  fields.replaceChildren();
  $("submit-error").textContent = "";
  $("submit-ok").textContent = "";
  if (!category) {
    $("submit-summary").textContent = "No category is loaded.";
    return;
  }
  $("submit-summary").textContent = category.summary;
  const schema = category.schema;
  const props = schema && typeof schema === "object" ? schema.properties : null;
  if (props && form.typesOf(schema).every((t) => t === "object")) {
    const required = new Set(schema.required || []);
    const names = Object.keys(props).sort((a, b) => required.has(b) - required.has(a));
    for (const field of names) {
      const c = form.control(field, { ...(props[field] || {}), title: undefined }, required.has(field));
      controls.set(field, c);
      fields.append(c.node);
    }
  } else {
    const c = form.control("params", { description: schema?.description || "The task's params, as JSON." }, true);
    c.kind = "body";
    controls.set("params", c);
    fields.append(c.node);
  }
}

async function submit(event) {
  event.preventDefault();
  form.clearErrors(controls);
  $("submit-error").textContent = "";
  $("submit-ok").textContent = "";
  const category = $("submit-category").value;
  let params;
  try {
    params = form.read(controls);
    if (controls.get("params")?.kind === "body") params = params.params;
  } catch (bad) {
    form.showError(controls, bad.field, bad.message);
    return;
  }
  try {
    const task = await call("POST", `/background/${encodeURIComponent(category)}`, params);
    hub.upsert(task);
    $("submit-ok").textContent = `Task ${task.id} submitted.`;
  } catch (e) {
    const field = fieldOf(e.message);
    if (!(field && form.showError(controls, field, e.message))) $("submit-error").textContent = e.message;
  }
}

// ---------------------------------------------------------------- the list

function visible(task) {
  const filter = $("filter-category").value;
  return !filter || task.category === filter;
}

/** Rows drawn at once; the rest follow in chunks, so a long list shows fast. */
const FIRST_ROWS = 100;
const CHUNK_ROWS = 200;
let renderToken = 0;

function renderAll() {
  const ul = $("tasks");
  const focused = document.activeElement?.closest?.("li.task")?.dataset.taskId;
  rows.clear();
  const ids = [...hub.tasks.values()].filter(visible).map((t) => t.id).sort((a, b) => b - a);
  ul.replaceChildren(rowsOf(ids.splice(0, FIRST_ROWS)));
  // The browser test measures the first render of a long list by this mark.
  if (!performance.getEntriesByName("tasks-rendered").length) performance.mark("tasks-rendered");
  if (focused) ul.querySelector(`li[data-task-id="${focused}"] button`)?.focus();
  $("tasks-empty").hidden = rows.size > 0;
  // The older rows, below the first screens: appended a chunk per turn of
  // the event loop, until a newer render starts over.
  const token = ++renderToken;
  const more = () => {
    if (token !== renderToken || !ids.length) return;
    ul.append(rowsOf(ids.splice(0, CHUNK_ROWS)));
    setTimeout(more, 0);
  };
  if (ids.length) setTimeout(more, 0);
}

/** The rows of the tasks `ids` still has, as a fragment. */
function rowsOf(ids) {
  const frag = document.createDocumentFragment();
  for (const id of ids) {
    const t = hub.tasks.get(id);
    if (!t || rows.has(id)) continue;
    const row = taskRow(t);
    rows.set(id, row);
    frag.append(row);
  }
  return frag;
}

/** A new task goes in id order (newest first). */
function insert(task) {
  if (!visible(task)) return;
  const row = taskRow(task);
  rows.set(task.id, row);
  const ul = $("tasks");
  const after = [...ul.children].find((li) => Number(li.dataset.taskId) < task.id);
  ul.insertBefore(row, after || null);
  $("tasks-empty").hidden = true;
}

function taskRow(task) {
  const row = el("li", { class: "task", "data-task-id": String(task.id) },
    el("span", { class: "id", text: `#${task.id}` }),
    el("span", { class: "what" },
      el("span", { class: "cat", text: task.category }), " ",
      el("span", { class: "name", text: task.name || "" }), " ",
      el("span", { class: "state" })),
    el("span", { class: "bar-cell" },
      el("progress", { max: "100", "aria-label": `Progress of task ${task.id}` }),
      el("span", { class: "pct", "aria-hidden": "true" })),
    el("span", { class: "actions" },
      el("button", {
        type: "button", class: "secondary log-toggle", text: "Log", "aria-expanded": "false",
        "aria-label": `Log of task ${task.id} (${task.category})`, onclick: () => toggleLog(task.id),
      }),
      el("button", { type: "button", class: "secondary remove", onclick: () => remove(task.id) })),
    el("span", { class: "detail" }),
    el("span", { class: "when" }));
  paint(row, task);
  return row;
}

/** Bring a row up to date without replacing it (focus and an open log stay). */
function paint(row, task) {
  const finished = task.state === "completed" || task.state === "error";
  const cancellable = task.state === "waiting" || (task.state === "running" && task.deletable);
  row.dataset.state = task.state;
  const state = row.querySelector(".state");
  state.className = `state state-${task.state}`;
  state.textContent = task.state;
  const bar = row.querySelector("progress");
  const v = percentOf(task);
  if (v === null) bar.removeAttribute("value");
  else bar.value = v;
  row.querySelector(".pct").textContent = v === null ? "" : `${v}%`;
  const remove = row.querySelector("button.remove");
  remove.hidden = !(finished || cancellable);
  const verb = finished ? "Delete" : "Cancel";
  remove.textContent = verb;
  remove.setAttribute("aria-label", `${verb} task ${task.id} (${task.category})`);
  row.querySelector(".detail").textContent = task.detail_state || (v !== null && !finished ? `${v}%` : "");
  const when = task.end || task.start || task.init;
  const slot = row.querySelector(".when");
  if (when && slot.dataset.when !== String(when)) {
    slot.dataset.when = String(when);
    slot.replaceChildren(ago(when));
  }
}

async function toggleLog(id) {
  const row = rows.get(id);
  if (!row) return;
  const button = row.querySelector(".log-toggle");
  const open = row.querySelector(".log");
  if (open) {
    open.remove();
    opened.delete(id);
    button.setAttribute("aria-expanded", "false");
    return;
  }
  opened.add(id);
  button.setAttribute("aria-expanded", "true");
  const list = el("ol", { class: "lines" });
  const box = el("div", { class: "log", role: "region", "aria-label": `Log of task ${id}` }, list);
  row.append(box);
  try {
    const log = await call("GET", `/background/${id}/log`);
    const lines = log.lines || [];
    list.prepend(...lines.map(logLine));
    if (log.truncated) list.prepend(el("li", { class: "hint", text: "(older lines were dropped)" }));
    if (!lines.length && !list.children.length) list.append(el("li", { class: "hint empty", text: "No log lines." }));
  } catch (e) {
    box.prepend(el("p", { class: "error", text: e.message }));
  }
}

function logLine(line) {
  return el("li", { class: `level-${line.level || "info"}` },
    line.ts ? ago(line.ts) : null, " ",
    el("span", { class: "level", text: line.level || "" }), " ",
    el("span", { class: "message", text: line.message }));
}

async function remove(id) {
  const task = hub.tasks.get(id);
  try {
    const ids = await call("DELETE", `/background/${id}`);
    for (const gone of ids) hub.forget(gone);
    $("tasks-status").textContent = `Task ${id} deleted.`;
    announce(`Task ${id}${task ? ` (${task.category})` : ""} deleted.`);
  } catch (e) {
    $("tasks-error").textContent = e.message;
  }
}

async function deleteFinished() {
  const category = $("filter-category").value;
  try {
    const ids = await call("DELETE", category ? `/background/${encodeURIComponent(category)}` : "/background/");
    for (const id of ids) hub.forget(id);
    $("tasks-status").textContent = `${ids.length} finished task${ids.length === 1 ? "" : "s"} deleted.`;
  } catch (e) {
    $("tasks-error").textContent = e.message;
  }
}
