// The dashboard's entry: the login form, the session, and the sections
// (one module each) chosen by the URL's hash: #store, #apps, #containers,
// #images, #tasks. Each view module exports `mount(section)`, called once
// after login, `show()` each time it is shown, and may export `hide()`.

import { $, call, hub, refreshTimes, session } from "./core.js";
import * as store from "./store.js";
import * as apps from "./apps.js";
import * as containers from "./containers.js";
import * as images from "./images.js";
import * as tasks from "./tasks.js";

const SIGNED_IN = "stevedore.signedIn";
const VIEWS = { store, apps, containers, images, tasks };
const DEFAULT_VIEW = "store";
const mounted = new Set();
let current = null;

function showLogin() {
  session.user = null;
  sessionStorage.removeItem(SIGNED_IN);
  hub.stop();
  if (current && VIEWS[current].hide) VIEWS[current].hide();
  current = null;
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("login-username").focus();
}

/** `tasks`: the caller's task list when already asked for (see below). */
async function showApp(user, tasks) {
  session.user = user;
  sessionStorage.setItem(SIGNED_IN, "1");
  $("who-name").textContent = `${user.username}${user.isAdmin ? " (admin)" : ""}`;
  $("who").hidden = false;
  $("nav").hidden = false;
  $("login-view").hidden = true;
  hub.start();
  if (tasks) {
    hub.fill(tasks);
    // The list was read before the stream opened: read it again once the
    // stream is open, so that no change in between is missed.
    hub.source.addEventListener("open", () => hub.reload().catch(() => {}), { once: true });
  } else await hub.reload().catch(() => {});
  await route();
}

/** Show the view the hash names. */
async function route() {
  if (!session.user) return;
  const name = location.hash.slice(1).split("/")[0];
  const view = VIEWS[name] ? name : DEFAULT_VIEW;
  if (current && current !== view && VIEWS[current].hide) VIEWS[current].hide();
  for (const n of Object.keys(VIEWS)) $(`view-${n}`).hidden = n !== view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const section = $(`view-${view}`);
  const changed = current !== view;
  current = view;
  if (!mounted.has(view)) {
    mounted.add(view);
    await VIEWS[view].mount(section);
  }
  await VIEWS[view].show();
  // Move focus to the view's heading after a change of section, so that a
  // keyboard or screen-reader user starts there.
  if (changed && document.activeElement?.closest?.("#nav")) section.querySelector("h2")?.focus();
}

async function login(event) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const error = $("login-error");
  error.textContent = "";
  if (!username || !password) {
    error.textContent = "Enter your user name and password.";
    return;
  }
  try {
    const user = await call("POST", "/login", { username, password });
    $("login-password").value = "";
    await showApp(user);
  } catch (e) {
    error.textContent = e.message;
    $("login-password").focus();
  }
}

async function logout() {
  try {
    await call("PUT", "/logout");
  } finally {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", () => route());
  document.addEventListener("signed-out", () => session.user && showLogin());
  setInterval(refreshTimes, 30_000);
  // Ask the server only when this tab logged in before: a fresh visitor
  // gets the form at once, without a 401 in the console.
  if (sessionStorage.getItem(SIGNED_IN)) {
    try {
      // The session and the task list are asked for at once: the first
      // render waits for one round trip, not two.
      const [user, tasks] = await Promise.all([call("GET", "/login_refresh"), call("GET", "/background/")]);
      return await showApp(user, tasks);
    } catch {
      // The session ended: log in again.
    }
  }
  showLogin();
});
