// Tiny DOM helpers: no framework, text always escaped.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") {
      for (const [prop, value] of Object.entries(v)) if (value !== undefined) el.style.setProperty(prop, String(value));
    }
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(0)}%`);
export const num = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

export function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return `${s.toFixed(0)} s ago`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 129600) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");

export function table(cols, rows, empty = "nothing yet") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => h("td", { class: c.cls || "" }, c.cell(r)))))));
}

export function errorBox(e) {
  return h("p", { class: "error" }, e.status === 403 ? `Not for you: ${e.message}` : `${e.code || "error"}: ${e.message}`);
}

// Green through amber to red for 0..1
export function heat(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "#2a3340";
  const x = Math.max(0, Math.min(1, v));
  const hue = 130 - 130 * x;
  return `hsl(${hue}, 65%, ${34 + 8 * x}%)`;
}
