// Building the page from data. Every value from the gateway goes in as text
// (a text node or an attribute), never as markup: session contents are whatever
// clients sent.

// h("a", {href: "#/x", onclick: fn, "data-figure": "n"}, "text", child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// columns: [{key, label, num?, cell?: row => content}]; rowKey: row => data-row value
export function table(columns, rows, rowKey, empty = "Nothing here yet.") {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => h("tr", { "data-row": rowKey ? rowKey(row) : null },
    columns.map((c) => h("td", { class: c.num ? "num" : null, "data-col": c.key },
      c.cell ? c.cell(row) : row[c.key]))));
  if (!rows.length) body.push(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

// A figure: its text as shown, its name for tests and scripts to find it by
export function figure(name, label, text, note) {
  return h("div", { class: "figure" }, h("div", { class: "label" }, label),
    h("div", { class: "value", "data-figure": name }, text), note ? h("div", { class: "note" }, note) : null);
}

// A horizontal bar, `share` from 0 to 1 (CSSOM width: allowed by the page's CSP)
export function meter(share, kind = "") {
  const fill = h("span", { class: `fill ${kind}` });
  fill.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;
  return h("span", { class: "meter" }, fill);
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}
