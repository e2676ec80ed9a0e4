// Overview: traffic, spend and tokens over time, latency per model, errors per
// provider (GET /v1/usage), and what the gateway is doing now (GET /v1/status).
import { api } from "../api.js";
import { fit, timeChart } from "../charts.js";
import { card, figure, h, meter, table } from "../dom.js";
import * as fmt from "../format.js";

// range -> [seconds, usage group_by, bucket seconds]
export const RANGES = {
  "1h": [3600, "minute", 60],
  "24h": [86400, "hour", 3600],
  "7d": [7 * 86400, "hour", 3600],
  "30d": [30 * 86400, "day", 86400],
};
const LIVE_EVERY_MS = 2000;

export async function render(view, { query, current }) {
  const range = RANGES[query.get("range")] ? query.get("range") : "24h";
  const [span, groupBy, step] = RANGES[range];
  const to = Math.ceil(Date.now() / 1000);
  const from = to - span;
  const usage = (group) => api("/v1/usage", { query: { from, to, group_by: group } });
  const [series, byModel, byProvider] = await Promise.all(
    [usage(groupBy), usage("model"), usage("provider")]);
  const live = h("div", { class: "figures" });
  await refreshLive(live);
  if (!current()) return null;
  const charts = timeCharts(series.data, from, to, step);
  view.dataset.from = from;
  view.dataset.to = to;
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), rangePicker(range)),
    totals(series.totals),
    card("Now", live),
    h("div", { class: "charts" }, charts.map((c) => c.element)),
    card("Per model", modelTable(byModel.data)),
    card("Per provider", providerTable(byProvider.data)),
  );
  const unfit = fit(charts);
  // a refused or failed look stops the polling (no error every 2 s); the next page load retries
  const timer = setInterval(() => refreshLive(live).catch(() => clearInterval(timer)), LIVE_EVERY_MS);
  return () => { clearInterval(timer); unfit(); };
}

function rangePicker(selected) {
  return h("div", { class: "range", role: "group", "aria-label": "Time range" },
    Object.keys(RANGES).map((name) => h("a", {
      href: `#/overview?range=${name}`, class: name === selected ? "active" : null,
      "data-range": name, "aria-current": name === selected ? "true" : null,
    }, name)));
}

function totals(t) {
  return h("div", { class: "figures" },
    figure("requests", "Requests", fmt.int(t.requests)),
    figure("errors", "Errors", fmt.int(t.errors), `${fmt.percent(t.errors, t.requests)} of requests`),
    figure("cost_usd", "Spend", fmt.usd(t.cost_usd),
      t.cost_unknown_requests ? `${fmt.int(t.cost_unknown_requests)} without a price` : null),
    figure("total_tokens", "Tokens", fmt.int(t.total_tokens),
      `${fmt.int(t.prompt_tokens)} in · ${fmt.int(t.completion_tokens)} out`),
    figure("latency_p50", "Latency p50", fmt.ms(t.latency_ms.p50)),
    figure("latency_p95", "Latency p95", fmt.ms(t.latency_ms.p95)),
    figure("ttft_p50", "First byte p50", fmt.ms(t.ttft_ms.p50)));
}

async function refreshLive(box) {
  const s = await api("/v1/status");
  box.replaceChildren(
    figure("in_flight", "In flight", fmt.int(s.in_flight), "chat calls being served"),
    figure("log_queue_depth", "Log queue", fmt.int(s.log_queue_depth), "rows waiting to be written"),
    figure("workers", "Workers", fmt.int(s.workers), "reporting, every 0.25 s"));
}

// Every bucket of [from, to), the API's groups in place and zeros between them
function timeCharts(groups, from, to, step) {
  const found = new Map(groups.map((g) => [bucketStart(g.group), g]));
  const x = [];
  for (let t = Math.floor(from / step) * step; t < to; t += step) x.push(t);
  const column = (key) => x.map((t) => (found.get(t) ? found.get(t)[key] : 0));
  return [
    timeChart("Requests", x, [
      { key: "requests", label: "requests", color: "#2f6fde", values: column("requests") },
      { key: "errors", label: "errors", color: "#d64545", values: column("errors") }], fmt.int),
    timeChart("Spend", x, [
      { key: "cost_usd", label: "USD", color: "#1c9a6c", values: column("cost_usd") }], fmt.usd),
    timeChart("Tokens", x, [
      { key: "prompt_tokens", label: "prompt", color: "#8a5cd6", values: column("prompt_tokens") },
      { key: "completion_tokens", label: "completion", color: "#e08a1e",
        values: column("completion_tokens") }], fmt.int),
  ];
}

// "2001-03-04" (day), "2001-03-04T10:00:00Z" (hour, minute) -> unix seconds
const bucketStart = (group) => Date.parse(group.length === 10 ? `${group}T00:00:00Z` : group) / 1000;

const name = (group) => group.group ?? "(none)";

function modelTable(rows) {
  return table([
    { key: "model", label: "Model", cell: name },
    { key: "requests", label: "Requests", num: true, cell: (r) => fmt.int(r.requests) },
    { key: "errors", label: "Errors", num: true, cell: (r) => fmt.int(r.errors) },
    { key: "total_tokens", label: "Tokens", num: true, cell: (r) => fmt.int(r.total_tokens) },
    { key: "cost_usd", label: "Spend", num: true, cell: (r) => fmt.usd(r.cost_usd) },
    { key: "latency_p50", label: "Latency p50", num: true, cell: (r) => fmt.ms(r.latency_ms.p50) },
    { key: "latency_p95", label: "p95", num: true, cell: (r) => fmt.ms(r.latency_ms.p95) },
    { key: "ttft_p50", label: "First byte p50", num: true, cell: (r) => fmt.ms(r.ttft_ms.p50) },
    { key: "ttft_p95", label: "p95", num: true, cell: (r) => fmt.ms(r.ttft_ms.p95) },
  ], rows, name, "No calls in this range.");
}

function providerTable(rows) {
  return table([
    { key: "provider", label: "Provider", cell: name },
    { key: "requests", label: "Requests", num: true, cell: (r) => fmt.int(r.requests) },
    { key: "attempts", label: "Attempts", num: true, cell: (r) => fmt.int(r.attempts) },
    { key: "errors", label: "Errors", num: true, cell: (r) => fmt.int(r.errors) },
    { key: "error_rate", label: "Error rate", num: true,
      cell: (r) => [fmt.percent(r.errors, r.requests),
        meter(r.requests ? r.errors / r.requests : 0, "bad")] },
    { key: "cost_usd", label: "Spend", num: true, cell: (r) => fmt.usd(r.cost_usd) },
  ], rows, name, "No calls in this range.");
}
