// The Containers view (being written).

import { el } from "./core.js";

export async function mount(section) {
  section.append(el("h2", { id: "containers-title", tabindex: "-1", text: "Containers" }));
}

export async function show() {}
