// The Stevedore dashboard: login, the task list kept live from the SSE
// stream, and a submit form per category built from the params schema each
// plugin gives (read from the server's OpenAPI document). No dependencies,
// nothing fetched from anywhere but this server.
"use strict";

const API = "/api/v1";
const SIGNED_IN = "stevedore.signedIn";
const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  tasks: new Map(), // id -> task
  deleted: new Set(), // ids deleted here: later events for them are ignored
  categories: new Map(), // name -> {summary, schema, deletable}
  events: null,
};

/** Call the API; resolves with the JSON answer, rejects with {status, reason, message}. */
async function call(method, path, body) {
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
    const err = new Error(e.message || resp.statusText || "request failed");
    err.status = resp.status;
    err.reason = e.reason || "";
    throw err;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

// ---------------------------------------------------------------- session

function showLogin() {
  state.user = null;
  sessionStorage.removeItem(SIGNED_IN);
  if (state.events) state.events.close();
  state.events = null;
  $("app-view").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("login-username").focus();
}

async function showApp(user) {
  state.user = user;
  sessionStorage.setItem(SIGNED_IN, "1");
  $("who-name").textContent = `${user.username}${user.isAdmin ? " (admin)" : ""}`;
  $("who").hidden = false;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  await loadCategories();
  await loadTasks();
  listen();
}

async function login(event) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const error = $("login-error");
  error.textContent = "";
  if (!username || !password) {
    error.textContent = "Enter your user name and password.";
    return;
  }
  try {
    const user = await call("POST", "/login", { username, password });
    $("login-password").value = "";
    await showApp(user);
  } catch (e) {
    error.textContent = e.message;
    $("login-password").focus();
  }
}

async function logout() {
  try {
    await call("PUT", "/logout");
  } finally {
    state.tasks.clear();
    renderTasks();
    showLogin();
  }
}

// ---------------------------------------------------------------- categories

/** The categories and their params schemas, from the OpenAPI document. */
async function loadCategories() {
  const doc = await call("GET", "/openapi.json");
  state.categories.clear();
  for (const item of Object.values(doc.paths || {})) {
    const op = item.post;
    if (!op || !op["x-stevedore-category"]) continue;
    const schema = op.requestBody?.content?.["application/json"]?.schema || {};
    state.categories.set(op["x-stevedore-category"], {
      summary: op.summary || "",
      deletable: !!op["x-stevedore-deletable"],
      schema,
    });
  }
  const names = [...state.categories.keys()].sort();
  const submit = $("submit-category");
  const filter = $("filter-category");
  const keep = filter.value;
  submit.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  filter.replaceChildren(el("option", { value: "", text: "All" }), ...names.map((n) => el("option", { value: n, text: n })));
  filter.value = names.includes(keep) ? keep : "";
  renderForm();
}

/** The JSON types a property allows, `null` left out. */
function typesOf(prop) {
  const out = new Set();
  const add = (t) => (Array.isArray(t) ? t : [t]).forEach((x) => x && x !== "null" && out.add(x));
  add(prop.type);
  for (const alt of [...(prop.anyOf || []), ...(prop.oneOf || [])]) {
    if (alt.type) add(alt.type);
    else if (alt.properties) out.add("object");
    else if (alt.enum) out.add("string");
  }
  return [...out];
}

function enumOf(prop) {
  if (Array.isArray(prop.enum)) return prop.enum.filter((v) => v !== null);
  const alts = [...(prop.anyOf || []), ...(prop.oneOf || [])];
  const consts = alts.filter((a) => "const" in a).map((a) => a.const).filter((v) => v !== null);
  return consts.length && consts.length === alts.filter((a) => a.type !== "null").length ? consts : null;
}

/** One form control for a schema property: {kind, node, input}. */
function control(name, prop, required) {
  const id = `f-${name}`;
  const types = typesOf(prop);
  const choices = enumOf(prop);
  const describedBy = `${id}-desc ${id}-error`;
  const desc = el("span", { id: `${id}-desc`, class: "desc", text: prop.description || "" });
  const error = el("span", { id: `${id}-error`, class: "error", role: "alert" });
  const label = el("label", { for: id, text: required ? `${name} (required)` : name });
  let input;
  let kind;
  if (choices) {
    kind = "choice";
    input = el("select", { id, name, "aria-describedby": describedBy },
      ...(required ? [] : [el("option", { value: "", text: "(default)" })]),
      ...choices.map((c) => el("option", { value: JSON.stringify(c), text: String(c) })));
  } else if (types.length === 1 && types[0] === "boolean") {
    kind = "boolean";
    input = el("input", { id, name, type: "checkbox", "aria-describedby": describedBy });
    input.checked = prop.default === true;
    return { kind, input, node: el("div", { class: "field check" }, input, label, desc, error) };
  } else if (types.length === 1 && (types[0] === "integer" || types[0] === "number")) {
    kind = types[0];
    input = el("input", {
      id, name, type: "number", inputmode: "numeric",
      step: types[0] === "integer" ? "1" : "any",
      min: prop.minimum, max: prop.maximum, "aria-describedby": describedBy,
    });
  } else if (types.length === 1 && types[0] === "string") {
    kind = "string";
    const secret = prop.format === "password" || prop.writeOnly || name === "password";
    input = el("input", { id, name, type: secret ? "password" : "text", autocomplete: secret ? "new-password" : "off", "aria-describedby": describedBy });
  } else {
    kind = "json";
    input = el("textarea", { id, name, placeholder: "JSON", "aria-describedby": describedBy, spellcheck: "false" });
  }
  if (required) input.setAttribute("aria-required", "true");
  if (prop.default !== undefined && prop.default !== null && kind !== "boolean") {
    input.value = kind === "json" ? JSON.stringify(prop.default) : kind === "choice" ? JSON.stringify(prop.default) : String(prop.default);
  }
  return { kind, input, node: el("div", { class: "field" }, label, input, desc, error) };
}

let formControls = new Map(); // field name -> control; "" for a whole-body textarea

function renderForm() {
  const name = $("submit-category").value;
  const category = state.categories.get(name);
  const fields = $("submit-fields");
  formControls = new Map();
  fields.replaceChildren();
  clearFormErrors();
  $("submit-ok").textContent = "";
  if (!category) {
    $("submit-summary").textContent = "No category is loaded.";
    return;
  }
  $("submit-summary").textContent = category.summary;
  const schema = category.schema;
  const props = schema && typeof schema === "object" ? schema.properties : null;
  if (props && typesOf(schema).every((t) => t === "object")) {
    const required = new Set(schema.required || []);
    const names = Object.keys(props).sort((a, b) => (required.has(b) - required.has(a)));
    for (const field of names) {
      const c = control(field, props[field] || {}, required.has(field));
      formControls.set(field, c);
      fields.append(c.node);
    }
  } else {
    const c = control("params", { description: schema?.description || "The task's params, as JSON." }, true);
    c.kind = "body";
    formControls.set("params", c);
    fields.append(c.node);
  }
}

function clearFormErrors() {
  $("submit-error").textContent = "";
  for (const c of formControls.values()) {
    c.input.removeAttribute("aria-invalid");
    c.node.querySelector(".error").textContent = "";
  }
}

function fieldError(field, message) {
  const c = formControls.get(field);
  if (!c) return false;
  c.input.setAttribute("aria-invalid", "true");
  c.node.querySelector(".error").textContent = message;
  c.input.focus();
  return true;
}

/** The params the form describes; throws {field, message} on bad input. */
function formParams() {
  const body = formControls.get("params");
  if (body && body.kind === "body") return parseJson("params", body.input.value);
  const params = {};
  for (const [field, c] of formControls) {
    const v = c.input.value;
    switch (c.kind) {
      case "boolean":
        if (c.input.checked) params[field] = true;
        break;
      case "integer":
      case "number":
        if (v !== "") params[field] = Number(v);
        break;
      case "choice":
        if (v !== "") params[field] = JSON.parse(v);
        break;
      case "json":
        if (v.trim() !== "") params[field] = parseJson(field, v);
        break;
      default:
        if (v !== "") params[field] = v;
    }
  }
  return params;
}

function parseJson(field, text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw { field, message: `not valid JSON: ${e.message}` };
  }
}

async function submit(event) {
  event.preventDefault();
  clearFormErrors();
  $("submit-ok").textContent = "";
  const category = $("submit-category").value;
  let params;
  try {
    params = formParams();
  } catch (bad) {
    fieldError(bad.field, bad.message);
    return;
  }
  try {
    const task = await call("POST", `/background/${encodeURIComponent(category)}`, params);
    upsert(task);
    $("submit-ok").textContent = `Task ${task.id} submitted.`;
  } catch (e) {
    // The server names the field first: `tag: invalid type ...`, `network.port[0]: ...`.
    const field = (e.message.match(/^([A-Za-z0-9_-]+)[.[:]/) || [])[1];
    if (!(field && fieldError(field, e.message))) $("submit-error").textContent = e.message;
  }
}

// ---------------------------------------------------------------- tasks

async function loadTasks() {
  try {
    const tasks = await call("GET", "/background/");
    state.tasks.clear();
    for (const t of tasks) if (!state.deleted.has(t.id)) state.tasks.set(t.id, t);
    renderTasks();
  } catch (e) {
    if (e.status === 401) return showLogin();
    $("tasks-error").textContent = e.message;
  }
}

/** Keep the list live: one `task` event per change. */
function listen() {
  if (state.events) state.events.close();
  const events = new EventSource(`${API}/background/events`);
  events.addEventListener("task", (m) => {
    const task = JSON.parse(m.data);
    const before = state.tasks.get(task.id);
    upsert(task);
    if (before && before.state !== task.state && (task.state === "completed" || task.state === "error")) {
      $("tasks-status").textContent = `Task ${task.id} (${task.category}) ${task.state}.`;
    }
  });
  // A task deleted anywhere (another tab, a script, retention) leaves the list.
  events.addEventListener("deleted", (m) => {
    const { id } = JSON.parse(m.data);
    state.deleted.add(id);
    if (state.tasks.delete(id)) renderTasks();
  });
  events.addEventListener("lagged", () => loadTasks());
  // After a dropped connection the browser reconnects by itself; reload the
  // list then, since events may have been missed.
  events.addEventListener("open", () => {
    if (state.events === events && events.wasOpen) loadTasks();
    events.wasOpen = true;
  });
  state.events = events;
}

function upsert(task) {
  if (state.deleted.has(task.id)) return;
  state.tasks.set(task.id, task);
  renderTasks();
}

async function remove(task) {
  try {
    const ids = await call("DELETE", `/background/${task.id}`);
    for (const id of ids) {
      state.deleted.add(id);
      state.tasks.delete(id);
    }
    renderTasks();
    $("tasks-status").textContent = `Task ${task.id} deleted.`;
  } catch (e) {
    $("tasks-error").textContent = e.message;
  }
}

async function deleteFinished() {
  const category = $("filter-category").value;
  try {
    const ids = await call("DELETE", category ? `/background/${encodeURIComponent(category)}` : "/background/");
    for (const id of ids) {
      state.deleted.add(id);
      state.tasks.delete(id);
    }
    renderTasks();
    $("tasks-status").textContent = `${ids.length} finished task${ids.length === 1 ? "" : "s"} deleted.`;
  } catch (e) {
    $("tasks-error").textContent = e.message;
  }
}

function progressBar(task) {
  const label = `Progress of task ${task.id}`;
  const bar = el("progress", { max: "100", "aria-label": label });
  if (task.state === "completed") bar.value = 100;
  else if (task.progress >= 0) bar.value = task.progress;
  // -1: no value, an indeterminate bar.
  return bar;
}

function percent(task) {
  if (task.state === "completed") return "100%";
  return task.progress >= 0 ? `${task.progress}%` : "";
}

function taskRow(task) {
  const finished = task.state === "completed" || task.state === "error";
  const cancellable = task.state === "waiting" || (task.state === "running" && task.deletable);
  let action = null;
  if (finished || cancellable) {
    const verb = finished ? "Delete" : "Cancel";
    action = el("button", {
      type: "button", class: "secondary", text: verb,
      "aria-label": `${verb} task ${task.id} (${task.category})`,
      onclick: () => remove(task),
    });
  }
  return el("li", { class: "task", "data-task-id": String(task.id), "data-state": task.state },
    el("span", { class: "id", text: `#${task.id}` }),
    el("span", { class: "what" },
      el("span", { class: "cat", text: task.category }), " ",
      el("span", { text: task.name || "" }), " ",
      el("span", { class: `state state-${task.state}`, text: task.state })),
    el("span", { class: "bar-cell" }, progressBar(task),
      el("span", { class: "pct", "aria-hidden": "true", text: percent(task) })),
    el("span", { class: "actions" }, action),
    el("span", { class: "detail", text: task.detail_state || (task.progress >= 0 && !finished ? `${task.progress}%` : "") }));
}

function renderTasks() {
  const filter = $("filter-category").value;
  const list = [...state.tasks.values()]
    .filter((t) => !filter || t.category === filter)
    .sort((a, b) => b.id - a.id);
  const ul = $("tasks");
  // Keep the focused button across re-renders (keyboard users).
  const focused = document.activeElement?.closest?.("li.task")?.dataset.taskId;
  ul.replaceChildren(...list.map(taskRow));
  if (focused) ul.querySelector(`li[data-task-id="${focused}"] button`)?.focus();
  $("tasks-empty").hidden = list.length > 0;
}

// ---------------------------------------------------------------- containers, applications

async function loadContainers() {
  const status = $("containers-status");
  status.textContent = "Loading…";
  try {
    const list = await call("GET", "/container");
    $("containers").replaceChildren(...list.map((c) =>
      el("li", { text: `${c.name} — ${c.image} — ${c.state} (${c.type})` })));
    status.textContent = list.length ? "" : "No containers.";
  } catch (e) {
    status.textContent = e.message;
  }
}

async function loadApps() {
  const status = $("apps-status");
  status.textContent = "Loading…";
  try {
    const apps = await call("GET", "/apps");
    const names = Object.keys(apps).sort();
    $("apps").replaceChildren(...names.map((n) =>
      el("li", { text: `${n} — ${apps[n].template || ""} ${apps[n].version || ""}` })));
    status.textContent = names.length ? "" : "No applications.";
  } catch (e) {
    status.textContent = e.message;
  }
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("submit-category").addEventListener("change", renderForm);
  $("submit-form").addEventListener("submit", submit);
  $("filter-category").addEventListener("change", renderTasks);
  $("delete-finished").addEventListener("click", deleteFinished);
  $("containers-refresh").addEventListener("click", loadContainers);
  $("apps-refresh").addEventListener("click", loadApps);
  // Ask the server only when this tab logged in before: a fresh visitor
  // gets the form at once, without a 401 in the console.
  if (sessionStorage.getItem(SIGNED_IN)) {
    try {
      return await showApp(await call("GET", "/login_refresh"));
    } catch {
      // The session ended: log in again.
    }
  }
  showLogin();
});
