// The learner page's entry point: loads config and the signed-in learner, draws the shell, routes by URL.

import { ApiError, get, onUnauthorized, post } from "./api.js";
import { announce, capitalize, h, initials } from "./dom.js";
import { icon } from "./icons.js";
import { accountView, safeNext, signInView, signUpView } from "./views/auth.js";
import { builderView } from "./views/builder.js";
import { companionView } from "./views/companion.js";
import { homeView } from "./views/home.js";
import { journeyView } from "./views/journey.js";
import { lessonView } from "./views/lesson.js";
import { libraryView } from "./views/library.js";
import { plansView } from "./views/plans.js";
import { adminView } from "./views/admin.js";
import { joinView } from "./views/join.js";
import { classLessonView, classView, learnerLessonsView, teachView } from "./views/teacher.js";

/** Routes in match order; `auth` screens send signed-out visitors to sign in and back. */
const ROUTES = [
  { pattern: /^\/$/, view: homeView, nav: "home" },
  { pattern: /^\/signin$/, view: signInView, guest: true },
  { pattern: /^\/signup$/, view: signUpView, guest: true },
  { pattern: /^\/companions$/, view: libraryView, auth: true, nav: "companions" },
  { pattern: /^\/companions\/new$/, view: builderView, auth: true, nav: "companions" },
  { pattern: /^\/companions\/(?<id>\d+)\/edit$/, view: builderView, auth: true, nav: "companions" },
  { pattern: /^\/companions\/(?<id>\d+)$/, view: companionView, auth: true, nav: "companions" },
  { pattern: /^\/lessons\/(?<id>\d+)$/, view: lessonView, auth: true, nav: "journey" },
  { pattern: /^\/journey$/, view: journeyView, auth: true, nav: "journey" },
  { pattern: /^\/plans$/, view: plansView, nav: "plans" },
  { pattern: /^\/account$/, view: accountView, auth: true },
  // The school console (the server checks the role on every request; these only route).
  { pattern: /^\/join$/, view: joinView, auth: true, nav: "companions" },
  { pattern: /^\/teach$/, view: teachView, auth: true, nav: "teach" },
  { pattern: /^\/teach\/classes\/(?<id>\d+)$/, view: classView, auth: true, nav: "teach" },
  { pattern: /^\/teach\/classes\/(?<id>\d+)\/learners\/(?<learnerId>\d+)$/, view: learnerLessonsView, auth: true, nav: "teach" },
  { pattern: /^\/teach\/classes\/(?<id>\d+)\/lessons\/(?<lessonId>\d+)$/, view: classLessonView, auth: true, nav: "teach" },
  { pattern: /^\/admin(?:\/(?<section>users|safety|audit|settings))?$/, view: adminView, auth: true, nav: "admin" },
];

const NAV = [
  { id: "home", href: "/", label: "Home", icon: "home" },
  { id: "companions", href: "/companions", label: "Companions", icon: "library" },
  { id: "journey", href: "/journey", label: "My journey", icon: "journey" },
  { id: "plans", href: "/plans", label: "Plans", icon: "plans" },
];

/** The school console's links, by the signed-in account's role (`/api/me` says it). */
function navFor(me) {
  const role = me.role || (me.is_admin ? "admin" : "learner");
  const items = [...NAV];
  if (role === "teacher" || role === "admin") items.push({ id: "teach", href: "/teach", label: "Classes", icon: "school" });
  if (role === "admin") items.push({ id: "admin", href: "/admin", label: "Admin", icon: "user" });
  return items;
}

class App {
  constructor() {
    this.config = null;
    this.me = null;
    this.current = null; // {route, result, controller}
    this.renderToken = 0;
  }

  async boot() {
    onUnauthorized(() => this.onSignedOut());
    window.addEventListener("popstate", () => this.render({ fromHistory: true }));
    document.addEventListener("click", (event) => this.onLinkClick(event));
    window.addEventListener("beforeunload", (event) => {
      // A live lesson ends when the page goes away; ask first so it is not lost by accident.
      if (this.current && this.current.result.confirmLeave && this.current.result.confirmLeave()) {
        event.preventDefault();
        event.returnValue = "";
      }
    });
    try {
      this.config = await get("/api/config");
    } catch (err) {
      this.showFatal(err);
      return;
    }
    await this.refreshMe();
    // A fresh page load leaves focus where the browser put it (so the first Tab reaches "Skip to content");
    // only later screen changes inside the page move focus to the new heading.
    await this.render({ initial: true });
  }

  /** Reload the signed-in learner (usage counts change after building a companion or starting a lesson). */
  async refreshMe() {
    try {
      this.me = await get("/api/me", { quiet401: true });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) console.warn("Could not load your account", err);
      this.me = null;
    }
    this.drawHeader();
    return this.me;
  }

  onSignedOut() {
    if (!this.me) return;
    this.me = null;
    this.drawHeader();
    this.toast("Your session ended. Please sign in again.");
    const here = location.pathname + location.search;
    this.navigate(`/signin?next=${encodeURIComponent(here)}`, { replace: true, force: true });
  }

  async signOut() {
    if (!(await this.canLeave())) return;
    try {
      await post("/api/auth/logout");
    } catch (err) {
      console.warn("Sign-out request failed", err);
    }
    this.me = null;
    this.drawHeader();
    this.toast("You are signed out.");
    this.navigate("/", { force: true });
  }

  onLinkClick(event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    const link = event.target.closest("a[href]");
    if (!link || link.target || link.hasAttribute("download") || link.dataset.external !== undefined) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
    event.preventDefault();
    if (url.hash && url.pathname === location.pathname && url.search === location.search) {
      // A link within this screen ("Skip to content"): move focus there; the screen stays as it is.
      const target = document.getElementById(decodeURIComponent(url.hash.slice(1)));
      if (target) {
        if (!target.hasAttribute("tabindex") && target.tabIndex < 0) target.setAttribute("tabindex", "-1");
        target.focus();
      }
      return;
    }
    this.navigate(url.pathname + url.search + url.hash);
  }

  async canLeave() {
    const result = this.current && this.current.result;
    if (result && result.confirmLeave && result.confirmLeave()) {
      if (!window.confirm("Leave this page? Your lesson will end.")) return false;
    }
    return true;
  }

  /** Go to a URL inside the page (History API). `replace` swaps the entry instead of adding one. */
  async navigate(url, { replace = false, force = false, keepFocus = false } = {}) {
    if (!force && !(await this.canLeave())) return;
    if (url === location.pathname + location.search && !force && !keepFocus) replace = true;
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    await this.render({ keepFocus });
  }

  match(pathname) {
    for (const route of ROUTES) {
      const found = route.pattern.exec(pathname);
      if (found) return { route, params: found.groups || {} };
    }
    return null;
  }

  async render({ keepFocus = false, fromHistory = false, initial = false } = {}) {
    const token = ++this.renderToken;
    const main = document.getElementById("main");
    const { pathname, search } = location;
    const found = this.match(pathname.replace(/\/+$/, "") || "/");
    const focusedId = keepFocus && document.activeElement ? document.activeElement.id : "";

    if (found && found.route.auth && !this.me) {
      history.replaceState(null, "", `/signin?next=${encodeURIComponent(pathname + search)}`);
      return this.render({ initial });
    }
    if (found && found.route.guest && this.me) {
      history.replaceState(null, "", safeNext(new URLSearchParams(search).get("next")));
      return this.render({ initial });
    }

    if (this.current) {
      this.current.controller.abort();
      if (this.current.result.cleanup) this.current.result.cleanup();
    }
    const controller = new AbortController();
    const ctx = {
      app: this,
      params: found ? found.params : {},
      query: new URLSearchParams(search),
      path: pathname,
      signal: controller.signal,
    };
    main.setAttribute("aria-busy", "true");
    let result;
    try {
      result = found ? await found.route.view(ctx) : notFound();
    } catch (err) {
      if (err && err.name === "AbortError") return;
      result = errorView(err, () => this.render());
    }
    if (token !== this.renderToken) {
      if (result.cleanup) result.cleanup();
      return;
    }
    this.current = { route: found && found.route, result, controller };
    main.replaceChildren(result.el);
    main.removeAttribute("aria-busy");
    document.title = result.title ? `${result.title} · Voice Tutor` : "Voice Tutor";
    this.markActiveNav(found && found.route.nav);

    const keep = focusedId && document.getElementById(focusedId);
    if (keep) {
      keep.focus();
    } else if (initial) {
      announce(result.title || "Page loaded");
    } else {
      if (!fromHistory) window.scrollTo(0, 0);
      // Moving focus to the new heading tells keyboard and screen-reader users the screen changed.
      const heading = main.querySelector("h1");
      const target = heading || main;
      if (heading) heading.setAttribute("tabindex", "-1");
      target.focus({ preventScroll: true });
      announce(result.title || "Page loaded");
    }
    if (result.mounted) result.mounted();
  }

  drawHeader() {
    const header = document.getElementById("site-header");
    const me = this.me;
    const brand = h(
      "a",
      { class: "brand", href: "/", "aria-label": "Voice Tutor home" },
      h("span", { class: "brand__mark" }, icon("logo", { size: 22 })),
      h("span", { class: "brand__name" }, "Voice Tutor"),
    );
    const nav = me
      ? h(
          "nav",
          { class: "main-nav", "aria-label": "Main" },
          h(
            "ul",
            {},
            navFor(me).map((item) =>
              h(
                "li",
                {},
                h(
                  "a",
                  { href: item.href, class: "main-nav__link", dataset: { nav: item.id } },
                  icon(item.icon, { size: 20 }),
                  h("span", {}, item.label),
                ),
              ),
            ),
          ),
        )
      : null;
    const account = me
      ? h(
          "div",
          { class: "account" },
          h(
            "a",
            { class: "account__chip", href: "/journey", title: `Signed in as ${me.email}` },
            h("span", { class: "avatar avatar--sm", "aria-hidden": "true" }, initials(me.name)),
            h("span", { class: "account__name" }, me.name),
            h("span", { class: "badge badge--plan" }, capitalize(me.plan)),
          ),
          // Icon only: the header has no room for another word beside the nav on a laptop screen.
          h(
            "a",
            { class: "btn btn--ghost btn--sm", href: "/account", "aria-label": "Account", title: "Account: password and where you're signed in" },
            icon("user", { size: 18 }),
          ),
          h(
            "button",
            { type: "button", class: "btn btn--ghost btn--sm", onclick: () => this.signOut() },
            icon("logout", { size: 18 }),
            h("span", {}, "Sign out"),
          ),
        )
      : h(
          "div",
          { class: "account" },
          h("a", { class: "btn btn--ghost btn--sm", href: "/signin" }, "Sign in"),
          this.config && this.config.registration
            ? h("a", { class: "btn btn--primary btn--sm", href: "/signup" }, "Sign up")
            : null,
        );
    header.replaceChildren(h("div", { class: "site-header__inner" }, brand, nav, account));
    document.body.classList.toggle("signed-in", Boolean(me));
    const footer = document.getElementById("site-footer");
    footer.replaceChildren(
      h(
        "div",
        { class: "site-footer__inner" },
        h("span", {}, "Voice Tutor · lessons run on your school's own server"),
        h("a", { href: "/plans" }, "Plans"),
      ),
    );
    if (this.current) this.markActiveNav(this.current.route && this.current.route.nav);
  }

  markActiveNav(navId) {
    for (const link of document.querySelectorAll(".main-nav__link")) {
      if (link.dataset.nav === navId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  toast(message, { tone = "info" } = {}) {
    const box = document.getElementById("toasts");
    const item = h("div", { class: `toast toast--${tone}` }, icon(tone === "error" ? "alert" : "check"), message);
    box.append(item);
    window.setTimeout(() => item.classList.add("toast--leaving"), 3500);
    window.setTimeout(() => item.remove(), 4000);
  }

  showFatal(err) {
    const main = document.getElementById("main");
    main.replaceChildren(
      h(
        "section",
        { class: "panel panel--center" },
        h("h1", {}, "The tutor server is not answering"),
        h("p", {}, (err && err.message) || "Please try again in a moment."),
        h("button", { type: "button", class: "btn btn--primary", onclick: () => location.reload() }, "Try again"),
      ),
    );
  }
}

function notFound() {
  return {
    title: "Page not found",
    el: h(
      "section",
      { class: "panel panel--center" },
      h("h1", {}, "We couldn't find that page"),
      h("p", { class: "muted" }, "The link may be old, or the page may have moved."),
      h("a", { class: "btn btn--primary", href: "/" }, "Go home"),
    ),
  };
}

function errorView(err, retry) {
  if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
    return {
      title: "Not available",
      el: h(
        "section",
        { class: "panel panel--center" },
        h("h1", {}, err.status === 404 ? "Not found" : "Not allowed"),
        h("p", { class: "muted" }, err.message),
        h("a", { class: "btn btn--primary", href: "/" }, "Go home"),
      ),
    };
  }
  console.error(err);
  return {
    title: "Something went wrong",
    el: h(
      "section",
      { class: "panel panel--center", role: "alert" },
      h("h1", {}, "Something went wrong"),
      h("p", { class: "muted" }, (err && err.message) || "Please try again."),
      h("button", { type: "button", class: "btn btn--primary", onclick: retry }, "Try again"),
    ),
  };
}

const app = new App();
app.boot();
