// The Applications view: one card per installed application, patched in
// place by name: its template and version, "Update available", each
// service's state and published ports as links, the proxy path, and
// Start / Stop / Restart / Upgrade / Delete. `#apps/NAME` focuses a card.

import { $, ago, announce, call, el, hub, submitTask, taskBar } from "./core.js";

const cards = new Map(); // name -> {node, parts, record}
const APP_TASKS = new Set(["application", "application_upgrade"]);
let loading = null;
let section;

export async function mount(node) {
  section = node;
  section.append(
    el("h2", { id: "apps-title", tabindex: "-1", text: "Applications" }),
    el("p", { id: "apps-status", class: "hint", role: "status" }),
    el("p", { id: "apps-error", class: "error", role: "alert" }),
    el("div", { id: "apps-list", class: "apps" }),
    el("p", { id: "apps-empty", class: "hint", hidden: true }, "No applications yet. ",
      el("a", { href: "#store", text: "Install one from the App store" }), "."));
  // A finished install or upgrade (from here, the wizard or another tab) changes the list.
  hub.on((kind, t) => {
    if (kind === "task" && APP_TASKS.has(t.category) && (t.state === "completed" || t.state === "error") && !section.hidden) load();
  });
}

export async function show() {
  await load();
  const target = decodeURIComponent(location.hash.split("/")[1] || "");
  const card = target && cards.get(target);
  if (card) {
    card.node.scrollIntoView({ block: "start" });
    card.node.focus();
  } else if (target) {
    $("apps-status").textContent = `There is no application named ${target}.`;
  }
}

/** Read the list and every shown app's record; one load at a time. */
function load() {
  loading ||= (async () => {
    $("apps-error").textContent = "";
    try {
      const list = (await call("GET", "/apps")) || {};
      const names = Object.keys(list).sort();
      for (const [name, c] of cards) if (!list[name]) (c.node.remove(), cards.delete(name));
      const ports = await portsByContainer();
      await Promise.all(names.map(async (name) => {
        const card = cards.get(name) || add(name);
        const record = await call("GET", `/apps/${encodeURIComponent(name)}`).catch(() => null);
        paint(card, { ...list[name], ...(record || {}) }, ports);
      }));
      // Keep cards in name order without rebuilding them.
      names.forEach((n) => $("apps-list").append(cards.get(n).node));
      $("apps-empty").hidden = names.length > 0;
      $("apps-status").textContent = names.length ? `${names.length} application${names.length === 1 ? "" : "s"}` : "";
    } catch (e) {
      $("apps-error").textContent = `The applications could not be read: ${e.message}`;
    } finally {
      loading = null;
    }
  })();
  return loading;
}

/** Published TCP ports by container name, from `GET container`, for records without `ports`. */
async function portsByContainer() {
  const map = new Map();
  const list = await call("GET", "/container").catch(() => []);
  for (const c of Array.isArray(list) ? list : []) {
    map.set(c.name, (c.tcpPort || []).map((host) => ({ host, protocol: "tcp" })));
  }
  return map;
}

function add(name) {
  const id = `app-${name}`;
  const parts = {
    meta: el("p", { class: "meta" }),
    services: el("ul", { class: "services", "aria-label": `Services of ${name}` }),
    links: el("p", { class: "links" }),
    actions: el("div", { class: "actions" }),
    confirm: el("div", { class: "confirm", hidden: true }),
    progress: el("div", { class: "progress" }),
    error: el("p", { class: "error", role: "alert" }),
  };
  const card = { name, parts, record: null, buttons: {} };
  for (const action of ["Start", "Stop", "Restart", "Upgrade", "Delete"]) {
    const b = el("button", { type: "button", class: action === "Delete" ? "danger" : "secondary", text: action, "aria-label": `${action} ${name}` });
    b.addEventListener("click", () => act(card, action.toLowerCase()));
    card.buttons[action.toLowerCase()] = b;
    parts.actions.append(b);
  }
  card.node = el("article", { class: "app card", "data-app": name, tabindex: "-1", "aria-labelledby": `${id}-title` },
    el("h3", { id: `${id}-title`, text: name }),
    parts.meta, parts.services, parts.links, parts.actions, parts.confirm, parts.progress, parts.error);
  cards.set(name, card);
  $("apps-list").append(card.node);
  return card;
}

function paint(card, rec, ports) {
  card.record = rec;
  const { parts, buttons, name } = card;
  // "Update available" is inline in the meta line: it comes and goes without moving the card.
  parts.meta.replaceChildren(`${rec.template || "?"} · version ${rec.version ?? "?"}${rec.creating ? " · installing…" : ""}`,
    ...(rec.created ? [" · installed ", ago(rec.created)] : []),
    rec.updateAvailable ? el("span", { class: "update", text: `Update available: ${rec.version} → ${rec.latestVersion}` }) : "");
  const containers = Array.isArray(rec.containers) ? rec.containers : (rec.container || []).map((n) => ({ name: n }));
  const items = containers.map((c) => {
    const state = c.state || "unknown";
    // One link per host port (an engine may list a port once per address family).
    const published = [...new Set((c.ports || ports.get(c.name) || []).filter((p) => p.host && (p.protocol || "tcp") === "tcp").map((p) => p.host))];
    return el("li", { "data-container": c.name },
      el("span", { class: "svc", text: c.name }), " ",
      el("span", { class: `state state-${state === "running" ? "ok" : state === "exited" || state === "dead" ? "error" : "run"}`, text: state }),
      ...published.map((host) => el("a", { class: "port-link", href: `http://${location.hostname}:${host}/`, target: "_blank", rel: "noopener",
        text: `Open port ${host}` })));
  });
  // Replace the rows only when something shown changed: no flicker on refresh.
  const sig = JSON.stringify(items.map((li) => li.textContent + li.querySelectorAll("a").length));
  if (parts.services.dataset.sig !== sig) {
    parts.services.dataset.sig = sig;
    parts.services.replaceChildren(...items);
  }
  // The proxy listens on its own address, which only the server knows: a
  // link when the record gives its URL, else the path as text.
  const vp = rec.virtual_path;
  const proxied = rec.proxyUrl && el("a", { class: "proxy-link", href: new URL(rec.proxyUrl, location.href).href, target: "_blank", rel: "noopener", text: vp });
  parts.links.replaceChildren(...(vp ? ["Proxy path: ", proxied || el("code", { text: vp })] : []));
  // Restart is for a running app; hidden while none of its containers runs
  // (Start does it then), which also keeps "Start NAME" a unique name.
  buttons.restart.hidden = !containers.some((c) => c.state === "running");
  buttons.upgrade.disabled = !rec.updateAvailable || card.busy;
  for (const k of ["start", "stop", "restart", "delete"]) buttons[k].disabled = !!card.busy || !!rec.creating;
  // A running install or upgrade of this app shows its bar here too.
  if (!parts.progress.querySelector(".taskbar")) {
    const task = [...hub.tasks.values()].find((t) => APP_TASKS.has(t.category) && t.params?.name === name && !["completed", "error"].includes(t.state));
    if (task) parts.progress.replaceChildren(taskBar(task, `${task.category === "application" ? "Installing" : "Upgrading"} ${name}`));
  }
}

async function refresh(card) {
  const [list, rec, ports] = await Promise.all([
    call("GET", "/apps").catch(() => ({})),
    call("GET", `/apps/${encodeURIComponent(card.name)}`),
    portsByContainer(),
  ]);
  paint(card, { ...(list[card.name] || {}), ...rec }, ports);
  return rec;
}

const DOING = { start: "Starting", stop: "Stopping", restart: "Restarting" };
const EXPECT = { start: (s) => s === "running", restart: (s) => s === "running", stop: (s) => s !== "running" };

async function act(card, action) {
  const { parts, name } = card;
  parts.error.textContent = "";
  if (action === "delete") return askDelete(card);
  if (action === "upgrade") return upgrade(card);
  setBusy(card, true);
  parts.progress.replaceChildren(el("span", { class: "hint", text: `${DOING[action]} ${name}…` }));
  try {
    await call("PUT", `/apps/${encodeURIComponent(name)}/${action}`);
    // Poll until every container is in the expected state, for at most 20 s.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const rec = await refresh(card);
      if ((rec.containers || []).every((c) => EXPECT[action](c.state)) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    announce(`${name}: ${action} done.`);
  } catch (e) {
    parts.error.textContent = `${action} failed: ${e.message}`;
  } finally {
    parts.progress.replaceChildren();
    setBusy(card, false);
    refresh(card).catch(() => {});
  }
}

function setBusy(card, busy) {
  card.busy = busy;
  for (const [k, b] of Object.entries(card.buttons)) b.disabled = busy || (k === "upgrade" && !card.record?.updateAvailable);
}

async function upgrade(card) {
  const { parts, name, record } = card;
  setBusy(card, true);
  try {
    const task = await submitTask("application_upgrade", { template: record.template, name });
    const bar = taskBar(task, `Upgrading ${name}`);
    parts.progress.replaceChildren(bar);
    bar.addEventListener("task-end", async (ev) => {
      setBusy(card, false);
      if (ev.detail.state === "error") parts.error.textContent = `Upgrade failed: ${ev.detail.detail_state || "see Tasks"}`;
      else announce(`${name} upgraded.`);
      await refresh(card).catch(() => {});
    });
  } catch (e) {
    setBusy(card, false);
    parts.error.textContent = `Upgrade failed: ${e.message}`;
  }
}

function askDelete(card) {
  const { parts, name } = card;
  const volumes = el("input", { type: "checkbox", id: `app-${name}-volumes` });
  const keep = el("button", { type: "button", class: "secondary", text: "Keep", "aria-label": `Keep ${name}` });
  const confirm = el("button", { type: "button", class: "danger", text: "Confirm remove", "aria-label": `Confirm remove ${name}` });
  const close = () => {
    parts.confirm.hidden = true;
    parts.confirm.replaceChildren();
    card.buttons.delete.focus();
  };
  keep.addEventListener("click", close);
  confirm.addEventListener("click", async () => {
    confirm.disabled = keep.disabled = true;
    setBusy(card, true);
    try {
      await call("DELETE", `/apps/${encodeURIComponent(name)}${volumes.checked ? "?remove_volumes=true" : ""}`);
      card.node.remove();
      cards.delete(name);
      announce(`${name} removed.`);
      $("apps-status").textContent = `${name} removed.`;
      $("apps-empty").hidden = cards.size > 0;
      $("apps-title").focus();
    } catch (e) {
      setBusy(card, false);
      close();
      parts.error.textContent = `Remove failed: ${e.message}`;
    }
  });
  parts.confirm.replaceChildren(
    el("p", { text: `Remove ${name}?` }),
    el("div", { class: "field check" }, volumes, el("label", { for: volumes.id, text: "Remove its volumes too" })),
    el("div", { class: "tools" }, confirm, keep));
  parts.confirm.hidden = false;
  keep.focus();
}
