// Forms built from a JSON Schema object's properties: one labelled control
// per property (number inputs with min/max, selects for enums, checkboxes,
// masked passwords, JSON text for the rest), the values read back typed,
// and errors shown beside the field they name. Used by the task form and
// the install wizards.

import { el } from "./core.js";

/** The JSON types a property allows, `null` left out. */
export function typesOf(prop) {
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

/**
 * One form control for a schema property: `{kind, node, input, prop}`.
 * `prefix` keeps ids unique between forms: the input is `<prefix>-<name>`,
 * its description `…-desc`, its error `…-error`. `title` (else the name)
 * labels it.
 */
export function control(name, prop, required, prefix = "f") {
  const id = `${prefix}-${name}`;
  const types = typesOf(prop);
  const choices = enumOf(prop);
  const describedBy = `${id}-desc ${id}-error`;
  const desc = el("span", { id: `${id}-desc`, class: "desc", text: prop.description || "" });
  const error = el("span", { id: `${id}-error`, class: "error", role: "alert" });
  const title = prop.title || name;
  const label = el("label", { for: id, text: required ? `${title} (required)` : title });
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
    return { kind, input, prop, node: el("div", { class: "field check" }, input, label, desc, error) };
  } else if (types.length === 1 && (types[0] === "integer" || types[0] === "number")) {
    kind = types[0];
    input = el("input", {
      id, name, type: "number", inputmode: "numeric",
      step: types[0] === "integer" ? "1" : "any",
      min: prop.minimum, max: prop.maximum, "aria-describedby": describedBy,
    });
  } else if (types.length === 1 && types[0] === "string") {
    kind = "string";
    const secret = prop.format === "password" || prop.writeOnly || /password|secret/i.test(name);
    input = el("input", {
      id, name, type: secret ? "password" : "text", autocomplete: secret ? "new-password" : "off",
      minlength: prop.minLength, maxlength: prop.maxLength, "aria-describedby": describedBy,
    });
  } else {
    kind = "json";
    input = el("textarea", { id, name, placeholder: "JSON", "aria-describedby": describedBy, spellcheck: "false" });
  }
  if (required) {
    input.setAttribute("aria-required", "true");
    input.required = true;
  }
  if (prop.default !== undefined && prop.default !== null && kind !== "boolean") {
    input.value = kind === "json" || kind === "choice" ? JSON.stringify(prop.default) : String(prop.default);
  }
  return { kind, input, prop, required, node: el("div", { class: "field" }, label, input, desc, error) };
}

/** Check one control as the page can; returns a message or null. */
export function check(name, c) {
  const v = c.input.value;
  if (c.kind === "boolean") return null;
  if (v === "" || (c.kind === "json" && v.trim() === "")) return c.required ? `${name}: required` : null;
  const p = c.prop || {};
  if (c.kind === "integer" || c.kind === "number") {
    const n = Number(v);
    if (!isFinite(n)) return `${name}: must be a number`;
    if (c.kind === "integer" && !Number.isInteger(n)) return `${name}: must be a whole number`;
    if (p.minimum !== undefined && n < p.minimum) return `${name}: must be at least ${p.minimum}`;
    if (p.maximum !== undefined && n > p.maximum) return `${name}: must be at most ${p.maximum}`;
  }
  if (c.kind === "string") {
    if (p.minLength !== undefined && v.length < p.minLength) return `${name}: must be at least ${p.minLength} characters`;
    if (p.pattern && !new RegExp(p.pattern, "u").test(v)) return `${name}: must match ${p.pattern}`;
  }
  return null;
}

/** The values of `controls` (a Map name → control) as params; throws `{field, message}`. */
export function read(controls, { validate = false } = {}) {
  const params = {};
  for (const [field, c] of controls) {
    if (validate) {
      const problem = check(field, c);
      if (problem) throw { field, message: problem };
    }
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
      case "body":
        if (v.trim() !== "") params[field] = parseJson(field, v);
        break;
      default:
        if (v !== "") params[field] = v;
    }
  }
  return params;
}

export function parseJson(field, text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw { field, message: `${field}: not valid JSON: ${e.message}` };
  }
}

/** Clear every control's error. */
export function clearErrors(controls) {
  for (const c of controls.values()) {
    c.input.removeAttribute("aria-invalid");
    c.node.querySelector(".error").textContent = "";
  }
}

/** Show `message` beside `field` and focus it; false when no such field. */
export function showError(controls, field, message) {
  const c = controls.get(field);
  if (!c) return false;
  c.input.setAttribute("aria-invalid", "true");
  c.node.querySelector(".error").textContent = message;
  c.input.focus();
  return true;
}
