// Sessions: the list with a search (GET /v1/sessions?q=), and one session's
// conversation replayed with each answer's tokens, cost, latency and feedback
// (GET /v1/sessions/{id}).
import { api } from "../api.js";
import { card, figure, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { paged } from "../pager.js";
import { feedbackBadges } from "./feedback.js";

export async function render(view, context) {
  return context.arg === null ? renderList(view, context) : renderSession(view, context);
}

// -- the list ----------------------------------------------------------------------
async function renderList(view, { query, current }) {
  const q = query.get("q") || "";
  const { rows, more, load } = paged("/v1/sessions", { q }, sessionTable);
  await load();
  if (!current()) return null;
  const search = h("input", { type: "search", name: "q", value: q, maxlength: 200,
    placeholder: "id, title or model", "aria-label": "Search sessions" });
  const form = h("form", { class: "search", method: "post", role: "search" }, search,
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = search.value.trim();
    window.location.hash = text ? `#/sessions?q=${encodeURIComponent(text)}` : "#/sessions";
  });
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Sessions"), form),
    card(q ? `Sessions matching “${q}”` : "Newest first", rows, more));
  return null;
}

const link = (s) => h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.title || s.id);

function sessionTable(sessions) {
  return table([
    { key: "title", label: "Session", cell: (s) => [link(s), h("div", { class: "sub" }, s.id)] },
    { key: "model", label: "Model", cell: (s) => s.model ?? "–" },
    { key: "message_count", label: "Messages", num: true, cell: (s) => fmt.int(s.message_count) },
    { key: "total_tokens", label: "Tokens", num: true, cell: (s) => fmt.int(s.total_tokens) },
    { key: "total_cost_usd", label: "Cost", num: true, cell: (s) => fmt.usd(s.total_cost_usd) },
    { key: "updated_at", label: "Last active", cell: (s) => fmt.when(s.updated_at) },
  ], sessions, (s) => s.id, "No sessions found.");
}

// -- one session ---------------------------------------------------------------------
async function renderSession(view, { arg, current }) {
  const session = await api(`/v1/sessions/${encodeURIComponent(arg)}`);
  if (!current()) return null;
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, session.title || session.id),
      h("a", { href: "#/sessions", class: "back" }, "← all sessions")),
    h("div", { class: "figures" },
      figure("message_count", "Messages", fmt.int(session.message_count)),
      figure("total_tokens", "Tokens", fmt.int(session.total_tokens)),
      figure("total_cost_usd", "Cost", fmt.usd(session.total_cost_usd)),
      figure("model", "Model", session.model ?? "–"),
      figure("created_at", "Started", fmt.when(session.created_at))),
    session.system_prompt
      ? card("System prompt", h("pre", { class: "prompt" }, session.system_prompt)) : null,
    card("Conversation", h("ol", { class: "conversation" }, session.messages.map(message))),
  );
  return null;
}

function message(m) {
  return h("li", { class: `message ${m.role}`, "data-message": m.id, "data-role": m.role },
    h("div", { class: "role" }, m.role, m.name ? ` · ${m.name}` : ""),
    h("div", { class: "content" }, contentOf(m)),
    m.role === "assistant" ? answerFacts(m) : null,
    m.feedback.length ? feedbackBadges(m.feedback) : null);
}

// text parts as text; anything else named, never loaded (an image URL is the client's)
function contentOf(m) {
  const parts = typeof m.content === "string" ? [m.content]
    : (m.content || []).map((p) => (p.type === "text" ? p.text : `[${p.type}]`));
  const calls = (m.tool_calls || []).map((c) => h("pre", { class: "tool-call" },
    `${c.function ? c.function.name : c.type}(${c.function ? c.function.arguments : ""})`));
  return [parts.map((p) => h("p", {}, p)), calls];
}

function answerFacts(m) {
  const usage = m.usage || {};
  const fact = (name, label, text) => h("span", { class: "fact" }, `${label} `,
    h("b", { "data-fact": name }, text));
  return h("div", { class: "facts" },
    fact("model", "model", `${m.model ?? "–"}${m.provider ? ` (${m.provider})` : ""}`),
    fact("prompt_tokens", "in", fmt.int(usage.prompt_tokens)),
    fact("completion_tokens", "out", fmt.int(usage.completion_tokens)),
    usage.estimated ? h("span", { class: "fact" }, "estimated") : null,
    fact("cost_usd", "cost", fmt.usd(m.cost_usd)),
    fact("latency_ms", "latency", fmt.ms(m.latency_ms)),
    fact("ttft_ms", "first byte", fmt.ms(m.ttft_ms)),
    fact("finish_reason", "finish", m.finish_reason ?? "–"));
}
