// Feedback: what users said about answers, newest first (GET /v1/feedback).
import { card, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { paged } from "../pager.js";

const TYPES = { thumbs_up: "▲ up", thumbs_down: "▼ down", flag: "⚑ flag" };

export async function render(view, { query, current }) {
  const type = TYPES[query.get("type")] ? query.get("type") : "";
  const { rows, more, load } = paged("/v1/feedback", { feedback_type: type }, feedbackTable);
  await load();
  if (!current()) return null;
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Feedback"), filter(type)),
    card("Newest first", rows, more));
  return null;
}

function filter(selected) {
  const choices = [["", "all"], ...Object.entries(TYPES)];
  return h("div", { class: "range", role: "group", "aria-label": "Feedback type" },
    choices.map(([type, label]) => h("a", {
      href: type ? `#/feedback?type=${type}` : "#/feedback", class: type === selected ? "active" : null,
      "data-type": type || "all",
    }, label)));
}

function feedbackTable(items) {
  return table([
    { key: "created_at", label: "When", cell: (f) => fmt.when(f.created_at) },
    { key: "feedback_type", label: "Type", cell: (f) => (f.feedback_type ? badge(f.feedback_type) : "–") },
    { key: "rating", label: "Rating", num: true, cell: (f) => (f.rating ? `${f.rating} / 5` : "–") },
    { key: "comment", label: "Comment", cell: (f) => f.comment ?? "" },
    { key: "session_id", label: "Session", cell: (f) => (f.session_id
      ? h("a", { href: `#/sessions/${encodeURIComponent(f.session_id)}` }, f.session_id) : "–") },
    { key: "completion_id", label: "Answer",
      cell: (f) => h("code", {}, f.completion_id ?? `message ${f.message_id}`) },
  ], items, (f) => f.id, "No feedback yet.");
}

const badge = (type) => h("span", { class: `badge ${type === "thumbs_up" ? "ok" : "bad"}` }, TYPES[type]);

// The feedback on one answer, as the session view shows it
export function feedbackBadges(items) {
  return h("div", { class: "feedback" }, items.map((f) => h("span", { class: "given", "data-feedback": f.id },
    f.feedback_type ? badge(f.feedback_type) : null,
    f.rating ? h("span", { class: "badge" }, `${f.rating} / 5`) : null,
    f.comment ? h("q", {}, f.comment) : null)));
}
