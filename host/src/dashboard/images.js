// The Images view (being written).

import { el } from "./core.js";

export async function mount(section) {
  section.append(el("h2", { id: "images-title", tabindex: "-1", text: "Images" }));
}

export async function show() {}
