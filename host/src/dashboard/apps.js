// The Applications view (being written).

import { el } from "./core.js";

export async function mount(section) {
  section.append(el("h2", { id: "apps-title", tabindex: "-1", text: "Applications" }));
}

export async function show() {}
