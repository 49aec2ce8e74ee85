// The App store view (being written).

import { el } from "./core.js";

export async function mount(section) {
  section.append(el("h2", { id: "store-title", tabindex: "-1", text: "App store" }));
}

export async function show() {}
