// DOM helpers. Everything the server sends is put on the page as text (textContent), never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function fmtPercent(x) {
  return x === null || x === undefined ? "–" : `${Math.round(x * 1000) / 10}%`;
}

export function fmtNumber(x) {
  if (x === null || x === undefined || x === "") return "–";
  const n = Number(x);
  if (Number.isNaN(n)) return String(x);
  return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function pretty(value) {
  return value === null || value === undefined ? "–" : JSON.stringify(value, null, 2);
}

export function pill(status) {
  const s = String(status || "").toLowerCase();
  return h("span", { class: `pill pill-${s}`, "data-status": status }, status || "–");
}

/** The query string of the hash (``#/page?x=1``) as an object. */
export function hashParams() {
  const query = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(query));
}

export function hashWith(page, params) {
  const kept = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  const query = new URLSearchParams(kept).toString();
  return `#/${page}${query ? "?" + query : ""}`;
}

export function table(columns, rows, { empty = "Nothing to show.", rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.cls || null }, c.cell(row)))),
      ),
    ),
  );
}

export function errorBox(error) {
  const code = error && error.code ? error.code : "ERROR";
  return h(
    "div",
    { class: "error-box", role: "alert", "data-code": code },
    h("strong", {}, code),
    " ",
    error && error.message ? error.message : String(error),
    error && error.correlationId ? h("span", { class: "muted" }, ` (correlation id ${error.correlationId})`) : null,
  );
}

export function field(label, control) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

/** ``el.append(...children)`` that skips null, undefined and false (the DOM's own prints "null"). */
export function add(el, ...children) {
  return append(el, children);
}
