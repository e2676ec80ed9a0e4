// A list read a page at a time (`limit`, `cursor` -> `has_more`, `next_cursor`, as
// /v1/sessions and /v1/feedback answer): `load()` fetches the next page, and
// `rows` shows every row read so far through `show(rows)`.
import { api } from "./api.js";
import { h } from "./dom.js";

const PAGE = 50;

export function paged(path, query, show) {
  const rows = h("div");
  const more = h("button", { type: "button", class: "quiet", hidden: true, "data-action": "more" },
    "Load more");
  const seen = [];
  let cursor = null;
  const load = async () => {
    const page = await api(path, { query: { ...query, cursor, limit: PAGE } });
    seen.push(...page.data);
    cursor = page.next_cursor;
    rows.replaceChildren(show(seen));
    more.hidden = !page.has_more;
  };
  more.addEventListener("click", () => load().catch(() => { more.hidden = true; }));
  return { rows, more, load };
}
