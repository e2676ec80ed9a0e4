// Models and providers: what is configured and available (GET /v1/providers),
// and each model's window, capabilities and price (GET /v1/models).
import { api } from "../api.js";
import { card, h, table } from "../dom.js";
import * as fmt from "../format.js";

export async function render(view, { current }) {
  const [providers, models] = await Promise.all([api("/v1/providers"), api("/v1/models")]);
  if (!current()) return null;
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Models & providers")),
    card("Providers", providerTable(providers)),
    card("Models",
      h("p", { class: "hint" }, "Prices in USD per million tokens; models of available providers only."),
      modelTable(models.data)),
  );
  return null;
}

function providerTable({ providers, default: fallback }) {
  return table([
    { key: "name", label: "Provider",
      cell: (p) => [p.name, p.name === fallback ? h("span", { class: "badge" }, "default") : null] },
    { key: "type", label: "Type" },
    { key: "available", label: "Available",
      cell: (p) => h("span", { class: `badge ${p.available ? "ok" : "bad"}` },
        p.available ? "available" : "not configured") },
    { key: "default_model", label: "Default model", cell: (p) => p.default_model ?? "–" },
    { key: "models", label: "Models", cell: (p) => fmt.list(p.models) },
    { key: "missing", label: "Needs", cell: (p) => fmt.list(p.missing) },
  ], providers, (p) => p.name);
}

const price = (kind) => (m) => (m.price ? fmt.rate(m.price[kind]) : "–");

function modelTable(models) {
  return table([
    { key: "id", label: "Model" },
    { key: "provider", label: "Provider" },
    { key: "context_length", label: "Context", num: true, cell: (m) => fmt.int(m.context_length) },
    { key: "supports_vision", label: "Vision", cell: (m) => fmt.yesNo(m.supports_vision) },
    { key: "supports_tools", label: "Tools", cell: (m) => fmt.yesNo(m.supports_tools) },
    { key: "supports_json_schema", label: "JSON schema", cell: (m) => fmt.yesNo(m.supports_json_schema) },
    { key: "price_input", label: "Input", num: true, cell: price("input") },
    { key: "price_cached_input", label: "Cached input", num: true, cell: price("cached_input") },
    { key: "price_output", label: "Output", num: true, cell: price("output") },
  ], models, (m) => `${m.provider}/${m.id}`, "No provider is available.");
}
