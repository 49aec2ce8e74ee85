// The Images view: the local images (size, when pulled, in use or not),
// pulling one as a task with its live bar, removing (confirmed inline) and
// exporting one to a file in the user's share folder.

import { $, announce, ago, bytes, call, confirmInline, el, fieldOf, hub, reconcile, submitTask, taskBar } from "./core.js";

const rows = new Map(); // "type:name:tag" -> tr
let loading = null;
let shown = false;

const label = (i) => `${i.name}:${i.version}`;
const keyOf = (i) => `${i.type}:${label(i)}`;
const IMAGE_TASKS = /^(image_|create$|application)/;

export async function mount(section) {
  section.append(
    el("div", { class: "heading-row" },
      el("h2", { id: "images-title", tabindex: "-1", text: "Images" }),
      el("p", { id: "images-status", class: "hint", role: "status" })),
    el("form", { id: "pull-form", class: "card pull", novalidate: true, onsubmit: pull },
      el("div", { class: "field" },
        el("label", { for: "pull-image", text: "Image to pull" }),
        el("span", { class: "pull-row" },
          el("input", {
            id: "pull-image", name: "image", placeholder: "busybox:latest", autocomplete: "off",
            spellcheck: "false", "aria-describedby": "pull-desc pull-error",
          }),
          el("button", { type: "submit", text: "Pull" })),
        el("span", { id: "pull-desc", class: "desc", text: "A name and tag from Docker Hub, or a registry's address: registry.example:5000/team/app:1.2" }),
        el("span", { id: "pull-error", class: "error", role: "alert" })),
      el("ul", { id: "pulls", class: "plain pulls", "aria-label": "Pulls" })),
    el("p", { id: "images-error", class: "error", role: "alert" }),
    el("div", { class: "card ops-card" },
      el("table", { id: "images", class: "ops" },
        el("caption", { class: "visually-hidden", text: "Local images" }),
        el("thead", {}, el("tr", {},
          ...["Name", "Tag", "Type", "Size", "Pulled", "Use"].map((h) => el("th", { scope: "col", class: h === "Size" ? "num" : null, text: h })),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Actions" })))),
        el("tbody", { id: "images-rows" })),
      el("p", { id: "images-empty", class: "hint", text: "No local images.", hidden: true })),
    exportDialog());
  // Images come and go with other tasks too (an app installed, a pull from Tasks).
  hub.on((kind, t) => {
    if (shown && kind === "task" && t.state === "completed" && IMAGE_TASKS.test(t.category)) refresh().catch(() => {});
  });
}

export async function show() {
  shown = true;
  await refresh().catch(() => {});
}

export function hide() {
  shown = false;
}

function refresh() {
  if (!loading) loading = load().finally(() => (loading = null));
  return loading;
}

async function load() {
  let images, containers;
  try {
    [images, containers] = await Promise.all([
      call("GET", "/image?category=local"),
      call("GET", "/container").catch(() => []),
    ]);
    $("images-error").textContent = (images.errors || []).map((e) => e.message || String(e)).join("; ");
  } catch (e) {
    $("images-error").textContent = `Could not list the images: ${e.message}`;
    throw e;
  }
  const list = (images.results || []).slice().sort((a, b) => label(a).localeCompare(label(b)));
  reconcile($("images-rows"), rows, list, keyOf, newRow, (row, i) => paint(row, i, inUse(i, containers)));
  $("images-empty").hidden = list.length > 0;
}

/** The containers made from `i`: Docker by image id, LXC by image name. */
function inUse(i, containers) {
  return containers.filter((c) =>
    c.type === "docker" ? i.type === "docker" && c.imageID === i.id
      : i.type === c.type && (c.image === i.name || c.image === label(i)));
}

function newRow(i) {
  const name = label(i);
  const remove = el("button", { type: "button", class: "danger act-remove", text: "Remove", "aria-label": `Remove ${name}` });
  remove.addEventListener("click", () => confirmInline(remove, name, () => removeImage(i)));
  return el("tr", { "data-image": name },
    el("th", { scope: "row", "data-label": "Name", class: "name", text: i.name }),
    el("td", { "data-label": "Tag", text: i.version }),
    el("td", { "data-label": "Type", text: i.type }),
    el("td", { "data-label": "Size", class: "num size" }),
    el("td", { "data-label": "Pulled", class: "when" }),
    el("td", { "data-label": "Use", class: "use" }, el("span", { class: "state" })),
    el("td", { "data-label": "Actions", class: "actions" },
      el("span", { class: "buttons" },
        i.type === "docker" ? el("button", { type: "button", class: "secondary act-export", text: "Export", "aria-label": `Export ${name}`, onclick: (ev) => openExport(i, ev.currentTarget) }) : null,
        remove),
      el("span", { class: "msg", role: "status" })));
}

function paint(row, i, users) {
  row._i = i;
  const size = bytes(i.size ?? i.bytes);
  const td = row.querySelector(".size");
  if (td.textContent !== size) td.textContent = size;
  const when = row.querySelector(".when");
  if (i.created && when.dataset.when !== String(i.created)) {
    when.dataset.when = String(i.created);
    when.replaceChildren(ago(i.created));
  }
  const chip = row.querySelector(".use .state");
  const text = users.length ? "in use" : "unused";
  if (chip.textContent !== text) {
    chip.textContent = text;
    chip.className = `state ${users.length ? "state-running" : ""}`;
  }
  chip.title = users.map((c) => c.name).join(", ");
}

function rowMessage(row, ...content) {
  const msg = row?.querySelector(".msg");
  if (!msg) return;
  msg.classList.remove("error");
  msg.replaceChildren(...content);
  return msg;
}

async function removeImage(i) {
  const row = rows.get(keyOf(i));
  const name = label(i);
  rowMessage(row, "Removing…");
  try {
    await call("DELETE", `/image/local/${[i.type, i.name, i.version].map(encodeURIComponent).join("/")}`);
    row?.remove();
    rows.delete(keyOf(i));
    $("images-empty").hidden = rows.size > 0;
    $("images-status").textContent = `${name} removed.`;
    announce(`${name} removed.`);
    $("images-title").focus();
  } catch (e) {
    const msg = rowMessage(row, e.status === 409 ? "in use by a container" : e.message);
    msg?.classList.add("error");
  }
}

// ---------------------------------------------------------------- pull

/** "reg:5000/team/app:1.2" → {image: "reg:5000/team/app", tag: "1.2"}. */
export function parseRef(text) {
  const ref = text.trim();
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  return colon > slash ? { image: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { image: ref, tag: "latest" };
}

async function pull(event) {
  event.preventDefault();
  const input = $("pull-image");
  const error = $("pull-error");
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  const bad = (message) => {
    error.textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  };
  const { image, tag } = parseRef(input.value);
  if (!image) return bad("Enter an image, e.g. busybox:latest.");
  if (!tag) return bad("The tag after “:” is empty.");
  try {
    const task = await submitTask("image_download", { type: "docker", image, tag });
    const name = `${image}:${tag}`;
    const item = el("li", {}, el("span", { class: "pull-name", text: name }), " ", taskBar(task, `Pull of ${name}`));
    item.addEventListener("task-end", (e) => {
      if (e.detail.state === "completed") {
        refresh().catch(() => {});
        announce(`${name} pulled.`);
      }
    });
    const list = $("pulls");
    list.prepend(item);
    while (list.children.length > 3) list.lastChild.remove();
    input.value = "";
  } catch (e) {
    // Every error of a pull (`image: …`, `tag: …`) is about the one input.
    bad(e.message);
  }
}

// ---------------------------------------------------------------- export

let exporting = null; // {image, opener}

function exportDialog() {
  return el("dialog", { id: "export-dialog", "aria-labelledby": "export-title" },
    el("form", { id: "export-form", novalidate: true, onsubmit: exportImage },
      el("h3", { id: "export-title", text: "Export" }),
      el("div", { class: "field" },
        el("label", { for: "export-path", text: "File name" }),
        el("input", { id: "export-path", name: "path", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "export-path-desc export-path-error" }),
        el("span", { id: "export-path-desc", class: "desc", text: "Written in your share folder (a path inside it is allowed)." }),
        el("span", { id: "export-path-error", class: "error", role: "alert" })),
      el("div", { class: "field check" },
        el("input", { id: "export-compress", type: "checkbox", onchange: suffix }),
        el("label", { for: "export-compress", text: "Compress (gzip)" })),
      el("div", { class: "field check" },
        el("input", { id: "export-force", type: "checkbox" }),
        el("label", { for: "export-force", text: "Replace an existing file" })),
      el("p", { id: "export-error", class: "error", role: "alert" }),
      el("div", { class: "tools" },
        el("button", { type: "submit", text: "Export" }),
        el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => $("export-dialog").close() }))));
}

/** The default file name follows the gzip box. */
function suffix() {
  const input = $("export-path");
  const gz = $("export-compress").checked;
  input.value = input.value.replace(/\.tar(\.gz)?$/, "") + (gz ? ".tar.gz" : ".tar");
}

function openExport(i, opener) {
  exporting = { image: i, opener };
  const dialog = $("export-dialog");
  $("export-title").textContent = `Export ${label(i)}`;
  $("export-path").value = `${label(i).replace(/[^A-Za-z0-9._-]+/g, "_")}.tar`;
  $("export-compress").checked = false;
  $("export-force").checked = false;
  $("export-path-error").textContent = "";
  $("export-error").textContent = "";
  $("export-path").removeAttribute("aria-invalid");
  if (!dialog.dataset.wired) {
    dialog.dataset.wired = "1";
    dialog.addEventListener("close", () => exporting?.opener?.isConnected && exporting.opener.focus());
  }
  dialog.showModal();
  $("export-path").select();
}

async function exportImage(event) {
  event.preventDefault();
  const i = exporting?.image;
  if (!i) return;
  const input = $("export-path");
  const path = input.value.trim();
  const fieldError = (message) => {
    $("export-path-error").textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  };
  $("export-path-error").textContent = "";
  $("export-error").textContent = "";
  input.removeAttribute("aria-invalid");
  if (!path) return fieldError("Enter a file name.");
  const params = { type: i.type, image: i.name, tag: i.version, path };
  if ($("export-compress").checked) params.compress = true;
  if ($("export-force").checked) params.force = true;
  try {
    const task = await submitTask("image_export", params);
    $("export-dialog").close();
    rowMessage(rows.get(keyOf(i)), `Export to ${path}: `, taskBar(task, `Export of ${label(i)}`));
  } catch (e) {
    if (fieldOf(e.message) === "path") fieldError(e.message);
    else $("export-error").textContent = e.message;
  }
}
