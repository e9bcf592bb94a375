// The console's shell: sign-in with a pasted token, who am I (``viewer``), and a hash router.

import { errorBox, h } from "./dom.js";
import * as exceptions from "./exceptions.js";
import { clearToken, gql, setToken, token } from "./graph.js";
import * as overview from "./overview.js";
import * as reports from "./reports.js";
import * as runs from "./runs.js";

const VIEWER = "query ConsoleViewer { viewer { subject roles legalEntities permissions } }";
const ROUTES = {
  overview: overview.render,
  exceptions: exceptions.renderList,
  exception: exceptions.renderDetail,
  runs: runs.render,
  reconciliation: reports.renderReconciliation,
  mapping: reports.renderMapping,
  audit: reports.renderAudit,
};

const $ = (id) => document.getElementById(id);
let viewer = null;
let rendering = 0;

function showLogin(message) {
  viewer = null;
  $("login").hidden = false;
  $("page").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
  $("token-input").focus();
}

async function signIn(value) {
  const bearer = (value || "").trim().replace(/^Bearer\s+/i, "");
  if (!bearer) {
    showLogin("Paste a token first.");
    return;
  }
  setToken(bearer);
  try {
    viewer = (await gql(VIEWER)).viewer;
  } catch (error) {
    clearToken();
    showLogin(`${error.code}: ${error.message}`);
    return;
  }
  $("token-input").value = "";
  $("login").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  const entities = viewer.legalEntities.join(", ");
  $("who").replaceChildren(h("strong", { "data-test": "viewer" }, viewer.subject), ` · ${viewer.roles.join(", ") || "no role"} · ${entities}`);
  await route();
}

function parse() {
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const page = path.split("/")[0] || "overview";
  const params = Object.fromEntries(new URLSearchParams(location.hash.split("?")[1] || ""));
  return { page: ROUTES[page] ? page : "overview", params };
}

async function route(_force = false, flash = null) {
  if (!viewer) return;
  const { page, params } = parse();
  const mine = ++rendering;
  for (const a of document.querySelectorAll("#nav a")) {
    const current = a.dataset.page === page || (page === "exception" && a.dataset.page === "exceptions");
    a.classList.toggle("active", current);
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // A fresh container per render: a slower, older render writes into a detached one.
  const container = h("div", { class: "view", "data-page": page });
  const root = $("page");
  root.removeAttribute("data-ready");
  root.replaceChildren(container);
  try {
    await ROUTES[page](container, { params, viewer, navigate, flash });
  } catch (error) {
    container.append(errorBox(error));
  }
  if (mine === rendering) root.setAttribute("data-ready", page);
}

export function navigate(hash, force = false, flash = null) {
  if (hash === location.hash || force) {
    if (hash !== location.hash) history.replaceState(null, "", hash);
    return route(true, flash);
  }
  location.hash = hash;
  return Promise.resolve();
}

window.addEventListener("hashchange", () => route());
window.addEventListener("p2c:unauthenticated", () => {
  clearToken();
  showLogin("The gateway refused the token (expired or invalid). Paste a new one.");
});

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("click", () => signIn($("token-input").value));
  $("token-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !e.shiftKey)) {
      e.preventDefault();
      signIn($("token-input").value);
    }
  });
  $("sign-out").addEventListener("click", () => {
    clearToken();
    showLogin("Signed out.");
  });
  if (token()) signIn(token());
  else showLogin("");
});
