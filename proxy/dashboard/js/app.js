// The dashboard's shell: sign-in, navigation (#/page/arg?query) and the page in view.
import { api, loginRequired, masterKey } from "./api.js";
import { errorBox, h } from "./dom.js";
import * as feedback from "./pages/feedback.js";
import * as keys from "./pages/keys.js";
import * as models from "./pages/models.js";
import * as overview from "./pages/overview.js";
import * as sessions from "./pages/sessions.js";

const PAGES = { overview, models, keys, sessions, feedback };
const $ = (id) => document.getElementById(id);

let shown = 0; // the number of the page in view: a page that is no longer shown stops
let leave = null; // what the page in view must undo when it goes (timers, charts)
let gateway = { keysEnabled: false };

function route() {
  const [path, query] = window.location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  return {
    page: PAGES[page] ? page : "overview",
    arg: rest.length ? decodeURIComponent(rest.join("/")) : null,
    query: new URLSearchParams(query || ""),
  };
}

async function show() {
  if (leave) leave();
  leave = null;
  const number = ++shown;
  const { page, arg, query } = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === page);
  }
  const view = h("div", { class: "page", "data-page": page, "data-arg": arg, "data-state": "loading" },
    h("p", { class: "loading" }, "Loading…"));
  $("view").replaceChildren(view);
  const context = { arg, query, gateway, current: () => number === shown };
  try {
    leave = (await PAGES[page].render(view, context)) || null;
    if (context.current()) view.dataset.state = "ready";
  } catch (error) {
    if (error.refusedKey) return signIn(error.message);
    if (context.current()) {
      view.replaceChildren(errorBox(error));
      view.dataset.state = "error";
    }
  }
}

function signIn(message) {
  if (leave) leave();
  leave = null;
  shown += 1;
  masterKey.clear();
  $("nav").hidden = $("logout").hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("master-key").value = "";
  $("master-key").focus();
}

async function enter() {
  const status = await api("/v1/status"); // refused unless the key is the master key
  gateway = { keysEnabled: status.keys_enabled };
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = !gateway.keysEnabled;
  await show();
}

async function start() {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    masterKey.set($("master-key").value.trim());
    $("master-key").value = "";
    await enter().catch((error) => signIn(error.refusedKey
      ? "This key was refused: the dashboard needs the gateway's master key." : error.message));
  });
  $("logout").addEventListener("click", () => signIn());
  window.addEventListener("hashchange", () => { if ($("login").hidden) show(); });
  if ((await loginRequired()) && !masterKey.get()) return signIn();
  await enter().catch((error) => (error.refusedKey ? signIn("Please sign in again.") :
    $("view").replaceChildren(errorBox(error))));
}

start();
