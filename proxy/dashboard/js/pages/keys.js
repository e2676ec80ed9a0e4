// Virtual keys: spend this month against budget, limits, create and revoke
// (/v1/keys; this month's spend per key from GET /v1/usage?group_by=key, the
// same sum of the log's costs that the budget check reads).
import { api } from "../api.js";
import { card, errorBox, h, meter, table } from "../dom.js";
import * as fmt from "../format.js";

export async function render(view, { current, gateway }) {
  const head = h("div", { class: "page-head" }, h("h1", {}, "Keys"));
  if (!gateway.keysEnabled) {
    view.replaceChildren(head, card(null, h("p", {}, "Virtual keys need a master key: start the gateway ",
      "with GATEWAY_MASTER_KEY set.")));
    return null;
  }
  const list = h("div", { class: "keys" });
  const secret = h("div", { class: "secret", hidden: true });
  await refresh(list);
  if (!current()) return null;
  view.replaceChildren(head, card("New key", createForm(list, secret), secret), card("Keys", list));
  return null;
}

const monthStart = () => {
  const now = new Date();
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) / 1000;
};

async function refresh(list) {
  const [keys, usage] = await Promise.all([api("/v1/keys"),
    api("/v1/usage", { query: { group_by: "key", from: monthStart() } })]);
  const spend = new Map(usage.data.map((g) => [g.group, g.cost_usd]));
  list.replaceChildren(keyTable(keys.data, spend, list));
}

const FIELDS = [
  ["name", "Name", { required: true, maxlength: 200, placeholder: "team or app" }],
  ["monthly_budget_usd", "Monthly budget (USD)", { type: "number", min: 0, step: "any" }],
  ["rpm_limit", "Requests a minute", { type: "number", min: 1, step: 1 }],
  ["tpm_limit", "Tokens a minute", { type: "number", min: 1, step: 1 }],
  ["models", "Models (comma-separated)", { placeholder: "all" }],
  ["providers", "Providers (comma-separated)", { placeholder: "all" }],
];
const NUMBERS = ["monthly_budget_usd", "rpm_limit", "tpm_limit"];
const LISTS = ["models", "providers"];

function createForm(list, secret) {
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "create", method: "post", "data-form": "new-key" },
    FIELDS.map(([name, label, attrs]) => h("label", {}, h("span", {}, label),
      h("input", { name, ...attrs }))),
    h("button", { type: "submit" }, "Create key"), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    try {
      const key = await api("/v1/keys", { method: "POST", body: keyBody(new FormData(form)) });
      form.reset();
      showSecret(secret, key);
      await refresh(list);
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
    }
  });
  return form;
}

function keyBody(data) {
  const body = {};
  for (const [name, raw] of data.entries()) {
    const value = raw.trim();
    if (!value) continue;
    if (NUMBERS.includes(name)) body[name] = Number(value);
    else if (LISTS.includes(name)) body[name] = value.split(",").map((s) => s.trim()).filter(Boolean);
    else body[name] = value;
  }
  return body;
}

function showSecret(box, key) {
  const code = h("code", { "data-figure": "new-key" }, key.key);
  const copy = navigator.clipboard
    ? h("button", { type: "button", class: "quiet",
      onclick: () => navigator.clipboard.writeText(key.key).catch(() => {}) }, "Copy")
    : null;
  box.replaceChildren(
    h("p", {}, `Key “${key.name}” (${key.id}) created. Copy its secret now: it is not shown again.`),
    h("div", { class: "secret-line" }, code, copy));
  box.hidden = false;
}

function state(key) {
  if (key.revoked) return ["revoked", "bad"];
  if (key.expires_at && Date.parse(key.expires_at) < Date.now()) return ["expired", "bad"];
  return ["active", "ok"];
}

function keyTable(keys, spend, list) {
  return table([
    { key: "name", label: "Name",
      cell: (k) => [k.name, h("div", { class: "sub" }, `${k.id} · ${k.key_hint}`)] },
    { key: "state", label: "State", cell: (k) => h("span", { class: `badge ${state(k)[1]}` }, state(k)[0]) },
    { key: "spend", label: "Spend this month", num: true,
      cell: (k) => spent(spend.get(k.id) || 0, k.monthly_budget_usd) },
    { key: "budget", label: "Budget", num: true, cell: (k) => fmt.usd(k.monthly_budget_usd) },
    { key: "limits", label: "Limits", cell: (k) => limits(k) },
    { key: "models", label: "Models", cell: (k) => fmt.list(k.models) },
    { key: "providers", label: "Providers", cell: (k) => fmt.list(k.providers) },
    { key: "created", label: "Created", cell: (k) => fmt.iso(k.created_at) },
    { key: "actions", label: "", cell: (k) => (k.revoked ? null : revokeButton(k, list)) },
  ], keys, (k) => k.id, "No keys yet: create one above.");
}

function spent(usd, budget) {
  if (budget === null || budget === undefined) return fmt.usd(usd);
  const share = budget > 0 ? usd / budget : 1;
  return [fmt.usd(usd), meter(share, share >= 1 ? "bad" : share >= 0.8 ? "warn" : "")];
}

function limits(k) {
  const parts = [k.rpm_limit ? `${fmt.int(k.rpm_limit)} rpm` : null,
    k.tpm_limit ? `${fmt.int(k.tpm_limit)} tpm` : null];
  return parts.filter(Boolean).join(" · ") || "gateway default";
}

// Two steps: "Revoke", then "Confirm" (no window.confirm: it blocks the page)
function revokeButton(key, list) {
  const box = h("span", { class: "actions" });
  const ask = () => box.replaceChildren(
    h("button", { type: "button", class: "danger", "data-action": "confirm-revoke", onclick: revoke },
      "Confirm revoke"),
    h("button", { type: "button", class: "quiet", onclick: idle }, "Cancel"));
  const idle = () => box.replaceChildren(
    h("button", { type: "button", class: "quiet", "data-action": "revoke", onclick: ask }, "Revoke"));
  async function revoke() {
    try {
      await api(`/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      await refresh(list);
    } catch (error) {
      box.replaceChildren(errorBox(error));
    }
  }
  idle();
  return box;
}
