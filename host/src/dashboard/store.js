// The App store: the repository's catalog (this host's arch) as cards, a
// search box and a type filter that filter the loaded list in the page,
// and an Install button per card that opens the wizard.

import { $, call, el } from "./core.js";
import { openWizard } from "./wizard.js";

/** What each catalog type is called on a card and in the filter. */
export const TYPES = { app: "Application", docker: "Docker image", lxc: "LXC image" };

/** The icon shown when an entry has none or its image fails: drawn here, no request. */
export const PLACEHOLDER =
  "data:image/svg+xml," +
  encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48"><rect width="48" height="48" rx="10" fill="#7a8699"/>' +
      '<path d="M12 20l12-7 12 7v14l-12 7-12-7z" fill="none" stroke="#fff" stroke-width="3" stroke-linejoin="round"/></svg>',
  );

let entries = [];
let signature = "";

export async function mount(section) {
  section.append(
    el("h2", { id: "store-title", tabindex: "-1", text: "App store" }),
    el("div", { class: "tools store-tools" },
      el("div", { class: "field" },
        el("label", { for: "store-q", text: "Search apps" }),
        el("input", { id: "store-q", type: "search", autocomplete: "off", oninput: filter })),
      el("div", { class: "field" },
        el("label", { for: "store-type", text: "Type" }),
        el("select", { id: "store-type", onchange: filter },
          el("option", { value: "", text: "All" }),
          el("option", { value: "app", text: "Applications" }),
          el("option", { value: "docker", text: "Docker images" }),
          el("option", { value: "lxc", text: "LXC images" })))),
    el("p", { id: "store-status", class: "hint store-status", role: "status" }),
    el("p", { id: "store-error", class: "error", role: "alert" }),
    el("div", { id: "store-grid", class: "store-grid" }));
  // An install changes which cards say "Installed as".
  document.addEventListener("app-installed", () => !section.hidden && load());
}

export async function show() {
  await load();
}

async function load() {
  $("store-error").textContent = "";
  let answer;
  try {
    answer = await call("GET", "/catalog");
  } catch (e) {
    if (!entries.length) $("store-status").textContent = "";
    $("store-error").textContent =
      e.status === 404 ? "This server has no app store yet." : `The catalog could not be read: ${e.message}`;
    return;
  }
  const list = answer?.entries || [];
  const errors = answer?.errors || [];
  if (errors.length) $("store-error").textContent = `The repository reported: ${errors.map(String).join("; ")}`;
  // Rebuild only when the catalog changed, so a refresh never moves the page.
  const sig = JSON.stringify(list);
  if (sig !== signature) {
    signature = sig;
    entries = list;
    $("store-grid").replaceChildren(...list.map(card));
  }
  filter();
}

function card(entry) {
  const title = entry.displayName || entry.name;
  const isApp = entry.type === "app";
  const installed = isApp ? entry.installed || [] : [];
  const img = el("img", { class: "app-icon", alt: "", width: "48", height: "48", src: entry.icon || PLACEHOLDER, loading: "lazy" });
  img.addEventListener("error", () => img.src !== PLACEHOLDER && (img.src = PLACEHOLDER), { once: true });
  const button = el("button", {
    type: "button",
    text: isApp ? "Install" : "Create",
    "aria-label": isApp ? `Install ${title}` : `Create a container from ${title}`,
  });
  button.addEventListener("click", () => openWizard(entry, button));
  return el("article", { class: "app-card card", "data-name": entry.name, "data-type": entry.type },
    el("div", { class: "app-card-head" },
      img,
      el("div", {},
        el("h3", { text: title }),
        el("p", { class: "meta", text: `${entry.version ? `v${entry.version} · ` : ""}${TYPES[entry.type] || entry.type}` }))),
    el("p", { class: "desc", title: entry.description || null, text: entry.description || "" }),
    el("div", { class: "app-card-foot" },
      installed.length
        ? el("p", { class: "installed" }, "Installed as ",
          ...installed.flatMap((n, i) => [i ? ", " : "", el("a", { href: `#apps/${encodeURIComponent(n)}`, text: n })]))
        : el("span"),
      button));
}

/** Show the cards the search box and the type select let through. */
function filter() {
  const q = $("store-q").value.trim().toLowerCase();
  const type = $("store-type").value;
  const cards = $("store-grid").children;
  let shown = 0;
  entries.forEach((e, i) => {
    const text = `${e.name} ${e.displayName || ""} ${e.description || ""}`.toLowerCase();
    const ok = (!type || e.type === type) && (!q || text.includes(q));
    cards[i].hidden = !ok;
    if (ok) shown++;
  });
  if (!entries.length && !signature) return;
  $("store-status").textContent = !entries.length
    ? "The catalog is empty."
    : shown === entries.length
      ? `${shown} ${shown === 1 ? "entry" : "entries"}`
      : shown
        ? `${shown} of ${entries.length} entries match`
        : "Nothing matches.";
}
