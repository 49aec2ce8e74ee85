// The install wizard, one <dialog id="wizard">: for an `app` entry, a form
// built from the template's wizard (every page's fields) plus the
// application's own fields, submitted as an `application` task; for a
// `docker`/`lxc` entry, the main fields of a `create` task. Answers are
// checked in the page, then by the server, whose error shows beside the
// field it names; then the task's live bar, and a link to what it made.

import { $, announce, call, el, fieldOf, submitTask, taskBar } from "./core.js";
import * as form from "./form.js";

const NAME_RULE = "^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$";
let dialog;
let opener = null;

function ensureDialog() {
  if (dialog) return dialog;
  dialog = el("dialog", { id: "wizard", "aria-labelledby": "wizard-title" },
    el("div", { class: "wizard-head" },
      el("h2", { id: "wizard-title" }),
      el("button", { type: "button", class: "secondary", text: "Close", onclick: () => dialog.close() })),
    el("div", { id: "wizard-body" }));
  dialog.addEventListener("close", () => {
    if (opener && opener.isConnected && !location.hash.startsWith("#apps/")) opener.focus();
  });
  document.body.append(dialog);
  return dialog;
}

/** Open the wizard for a catalog entry; `from` gets the focus back on close. */
export async function openWizard(entry, from) {
  ensureDialog();
  opener = from || document.activeElement;
  const isApp = entry.type === "app";
  const title = entry.displayName || entry.name;
  $("wizard-title").textContent = isApp ? `Install ${title}` : `Create a container from ${title}`;
  const body = $("wizard-body");
  body.replaceChildren(el("p", { class: "hint", text: "Loading…" }));
  if (!dialog.open) dialog.showModal();
  try {
    body.replaceChildren(...(isApp ? await appForm(entry) : await containerForm(entry)));
  } catch (e) {
    body.replaceChildren(el("p", { class: "error", role: "alert", text: `The wizard could not be loaded: ${e.message}` }));
  }
  dialog.querySelector("#wizard-body input, #wizard-body select")?.focus();
}

/** A wizard property as a JSON Schema one `form.control` understands. */
function normalise(prop, fallback) {
  const p = { ...prop };
  delete p.required;
  if (p.type === "password") Object.assign(p, { type: "string", format: "password" });
  if (!p.type && !p.enum && !p.anyOf && !p.oneOf) p.type = "string";
  if (p.default === undefined && fallback !== undefined) p.default = fallback;
  return p;
}

function fieldset(legend, controls) {
  return el("fieldset", {}, el("legend", { text: legend }), ...[...controls.values()].map((c) => c.node));
}

/** Check every control; show each problem beside its field, focus the first. */
function checkAll(controls) {
  const problems = [];
  for (const [name, c] of controls) {
    const label = c.node.querySelector("label")?.textContent.replace(/ \(required\)$/, "") || name;
    const problem = form.check(label, c);
    if (problem) problems.push([name, problem]);
  }
  for (const [name, problem] of problems.reverse()) form.showError(controls, name, problem);
  return problems.length === 0;
}

// ------------------------------------------------------------- applications

async function appForm(entry) {
  const w = await call("GET", `/template/${encodeURIComponent(entry.name)}/wizard?lang=eng`);
  const own = new Map();
  const taken = new Set(entry.installed || []);
  let suggested = entry.name;
  for (let i = 2; taken.has(suggested); i++) suggested = `${entry.name}${i}`;
  const props = {
    name: { type: "string", title: "Application name", default: suggested, pattern: NAME_RULE, minLength: 2, maxLength: 64,
      description: "2 to 64 letters, digits, _ . or -, starting with a letter or digit." },
    autostart: { type: "boolean", title: "Start with the engine", description: "Restart its containers when the engine restarts." },
    virtual_path: { type: "string", title: "Proxy path", pattern: "^/[^\\s?#]+$",
      description: "Serve it behind the reverse proxy at this path, e.g. /notes (optional)." },
    port: { type: "integer", title: "Proxy target port", minimum: 1, maximum: 65535,
      description: "The HTTP port the proxy path forwards to (optional)." },
  };
  for (const [k, p] of Object.entries(props)) own.set(k, form.control(k, p, k === "name", "wa"));

  const answers = new Map();
  const pages = [];
  for (const page of w.wizard || []) {
    const schema = page.schema || {};
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const controls = new Map();
    for (const [k, raw] of Object.entries(schema.properties || {})) {
      const c = form.control(k, normalise(raw || {}, w.default?.[k]), raw?.required === true || required.has(k), "w");
      controls.set(k, c);
      answers.set(k, c);
    }
    if (controls.size) pages.push(fieldset(page.title || "Settings", controls));
  }
  const all = new Map([...own, ...[...answers].map(([k, c]) => [`binding.${k}`, c])]);
  const error = el("p", { class: "error", role: "alert" });
  const submit = el("button", { type: "submit", text: "Install" });

  const onsubmit = async (event) => {
    event.preventDefault();
    form.clearErrors(all);
    error.textContent = "";
    if (!checkAll(all)) return;
    const params = { template: entry.name, ...form.read(own), binding: form.read(answers) };
    submit.disabled = true;
    try {
      const task = await submitTask("application", params);
      started(formNode, task, params.name, `Installing ${params.name}`, { href: `#apps/${encodeURIComponent(params.name)}`, text: `Open ${params.name}` });
    } catch (e) {
      serverError(e, (field) => all.get(field) && form.showError(all, field, e.message), error);
    } finally {
      submit.disabled = false;
    }
  };
  const formNode = el("form", { class: "wizard-form", novalidate: true, onsubmit },
    w.description ? el("p", { class: "hint wizard-desc", text: plain(w.description) }) : null,
    fieldset("Application", own),
    ...pages,
    error,
    el("div", { class: "tools" }, submit));
  return [formNode];
}

/** A template's Markdown description as plain text: headings dropped, emphasis and code marks removed. */
function plain(md) {
  return md.replace(/^#+ .*\n+/gm, "").replace(/(\*\*|__|`)(.+?)\1/g, "$2").trim();
}

/** Route a server error to its field (`binding.key` → the wizard's `key`), else `general`. */
function serverError(e, showAt, general) {
  const message = e.message || String(e);
  const binding = message.match(/^binding\.([A-Za-z0-9_-]+)/);
  const field = binding ? `binding.${binding[1]}` : fieldOf(message);
  if (!(field && showAt(field, message))) general.textContent = message;
}

/** Replace the form with the task's live bar; on completion, `link`. */
function started(formNode, task, name, label, link) {
  const note = el("p", { class: "hint", role: "status", text: `${label}… You may close this window: the task goes on in Tasks.` });
  const outcome = el("p", { class: "wizard-outcome" });
  const bar = taskBar(task, label);
  const box = el("div", { class: "wizard-progress" }, note, bar, outcome);
  formNode.hidden = true;
  formNode.after(box);
  bar.addEventListener("task-end", (ev) => {
    const t = ev.detail;
    if (t.state === "completed") {
      note.textContent = `${name} is ready.`;
      const a = el("a", { href: link.href, class: "button-link", text: link.text, onclick: () => dialog.close() });
      outcome.replaceChildren(a);
      a.focus();
      announce(`${name} is ready.`);
      document.dispatchEvent(new CustomEvent("app-installed", { detail: name }));
    } else {
      note.textContent = `It failed: ${t.detail_state || "see its log in Tasks"}.`;
      outcome.replaceChildren(el("button", { type: "button", class: "secondary", text: "Back to the form",
        onclick: () => { box.remove(); formNode.hidden = false; formNode.querySelector("input")?.focus(); } }));
      announce(`${label} failed.`);
    }
  });
  dialog.querySelector(".wizard-head button").focus();
}

// --------------------------------------------------------------- containers

async function containerForm(entry) {
  const docker = entry.type === "docker";
  const base = entry.name.split("/").pop().replace(/[^a-zA-Z0-9_.-]/g, "-");
  const main = new Map();
  const props = {
    name: { type: "string", title: "Container name", default: base.length > 1 ? base : `${base}-1`, pattern: NAME_RULE, minLength: 2, maxLength: 64 },
    ...(docker ? { tag: { type: "string", title: "Tag", default: "latest" } } : {}),
    autostart: { type: "boolean", title: "Start with the engine" },
    cputime: { type: "integer", title: "CPU limit (ms per second)", minimum: 10, maximum: 999, description: "10 to 999; empty: no limit." },
    memory: { type: "string", title: "Memory limit", pattern: "^[0-9]+(\\.[0-9]+)?\\s*[kKmMgG]?[bB]?$", description: "e.g. 512m or 2g, at least 64m; empty: no limit." },
  };
  for (const [k, p] of Object.entries(props)) main.set(k, form.control(k, p, k === "name", "wc"));
  const folders = await call("GET", "/sharefolder/").catch(() => []);
  const list = el("datalist", { id: "wc-folders" },
    ...(Array.isArray(folders) ? folders : []).filter((f) => f.isDir).map((f) => el("option", { value: `/${f.name}` })));
  const ports = rows("port", "Published ports", (i) => [
    ["host", el("input", { type: "number", min: "0", max: "65535", inputmode: "numeric" }), `Host port ${i}`],
    ["container", el("input", { type: "number", min: "1", max: "65535", inputmode: "numeric" }), `Container port ${i}`],
    ["protocol", el("select", {}, el("option", { text: "tcp" }), el("option", { text: "udp" })), `Protocol ${i}`],
  ]);
  const volumes = rows("volume", "Folders", (i) => [
    ["host", el("input", { list: "wc-folders", placeholder: "/Public/data" }), `Host folder ${i} (in your share folder)`],
    ["bind", el("input", { placeholder: "/data" }), `Container path ${i}`],
  ]);
  const error = el("p", { class: "error", role: "alert" });
  const submit = el("button", { type: "submit", text: "Create" });
  const inputs = [...main.values()].map((c) => c.node);

  const onsubmit = async (event) => {
    event.preventDefault();
    form.clearErrors(main);
    ports.clear();
    volumes.clear();
    error.textContent = "";
    let ok = checkAll(main);
    const portList = [];
    const portRows = [];
    for (const r of ports.values()) {
      const h = r.host.value.trim();
      const c = r.container.value.trim();
      if (!h && !c) continue;
      if (!/^\d+$/.test(c) || +c < 1 || +c > 65535) ok = r.fail("container", "Container port: a number from 1 to 65535") && false;
      else if (h && (!/^\d+$/.test(h) || +h > 65535)) ok = r.fail("host", "Host port: a number from 0 to 65535") && false;
      else portList.push([h ? +h : 0, +c, r.protocol.value]) && portRows.push(r);
    }
    const host = {};
    for (const r of volumes.values()) {
      const h = r.host.value.trim();
      const b = r.bind.value.trim();
      if (!h && !b) continue;
      if (!b.startsWith("/")) ok = r.fail("bind", "Container path: an absolute path such as /data") && false;
      else if (!h || h.split("/").includes("..")) ok = r.fail("host", "Host folder: a folder in your share folder, without ..") && false;
      else host[h.startsWith("/") ? h : `/${h}`] = { bind: b, ro: false };
    }
    if (!ok) return;
    const v = form.read(main);
    const params = { type: entry.type, image: entry.name, name: v.name, tag: v.tag || "latest" };
    if (!docker) params.repository = "qnap";
    if (v.autostart) params.autostart = true;
    if (portList.length) params.network = { port: portList };
    if (Object.keys(host).length) params.volume = { host };
    if (v.cputime !== undefined || v.memory) params.resource = { limit: { cputime: v.cputime, memory: v.memory } };
    submit.disabled = true;
    try {
      const task = await submitTask("create", params);
      started(formNode, task, v.name, `Creating ${v.name}`, { href: "#containers", text: "Open Containers" });
    } catch (e) {
      serverError(e, (field) => {
        const m = e.message;
        const port = m.match(/^network\.port\[(\d+)\]/);
        if (port) return portRows[+port[1]]?.fail("host", m);
        if (field === "volume") {
          const key = (m.match(/^volume\.host\["([^"]*)"\]/) || [])[1];
          return volumes.find((r) => `/${r.host.value.trim().replace(/^\//, "")}` === key)?.fail(m.includes(".bind") ? "bind" : "host", m);
        }
        const limit = m.match(/^resource\.limit\.(\w+)/);
        const name = limit ? limit[1] : field;
        return main.has(name) && form.showError(main, name, m);
      }, error);
    } finally {
      submit.disabled = false;
    }
  };
  const formNode = el("form", { class: "wizard-form", novalidate: true, onsubmit },
    el("p", { class: "hint", text: `Image: ${entry.name}${entry.description ? ` – ${entry.description}` : ""}` }),
    el("fieldset", {}, el("legend", { text: "Container" }), ...inputs.slice(0, docker ? 3 : 2)),
    ports.node,
    volumes.node,
    el("fieldset", {}, el("legend", { text: "Limits" }), ...inputs.slice(docker ? 3 : 2)),
    list,
    error,
    el("div", { class: "tools" }, submit));
  return [formNode];
}

/**
 * A list of rows of inputs with "Add" and "Remove" buttons. `make(i)` gives
 * `[key, input, label]` triples for row `i` (1-based). The result knows its
 * rows (`values()`, `find`) and clears their errors (`clear()`).
 */
function rows(kind, legend, make) {
  const items = [];
  const listNode = el("div", { class: "rows" });
  const add = () => {
    const n = items.length + 1;
    const row = { fields: {} };
    const error = el("span", { class: "error", role: "alert" });
    const cells = make(n).map(([key, input, label]) => {
      const id = `wc-${kind}-${n}-${key}`;
      input.id = id;
      input.setAttribute("aria-describedby", `wc-${kind}-${n}-error`);
      row[key] = input;
      return el("div", { class: "field" }, el("label", { for: id, text: label }), input);
    });
    error.id = `wc-${kind}-${n}-error`;
    row.node = el("div", { class: "row" }, ...cells,
      el("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove ${kind} ${n}`,
        onclick: () => { row.node.remove(); items.splice(items.indexOf(row), 1); addButton.focus(); } }),
      error);
    row.fail = (key, message) => {
      row[key].setAttribute("aria-invalid", "true");
      error.textContent = message;
      row[key].focus();
      return true;
    };
    items.push(row);
    listNode.append(row.node);
    return row;
  };
  const addButton = el("button", { type: "button", class: "secondary", text: `Add ${kind === "port" ? "a port" : "a folder"}`,
    onclick: () => add().node.querySelector("input, select").focus() });
  return {
    node: el("fieldset", {}, el("legend", { text: legend }), listNode, addButton),
    values: () => items,
    find: (f) => items.find(f),
    clear() {
      for (const r of items) {
        r.node.querySelectorAll("[aria-invalid]").forEach((x) => x.removeAttribute("aria-invalid"));
        r.node.querySelector(".error").textContent = "";
      }
    },
  };
}
