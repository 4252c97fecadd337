// Home: popular companions, recent lessons and a call to build a companion (a welcome for visitors).

import { get } from "../api.js";
import { h } from "../dom.js";
import { companionGrid, emptyState, lessonRow, sectionHeader } from "../components.js";
import { icon, subjectTile } from "../icons.js";
import { isNewAccount } from "./auth.js";

const RECENT_LESSONS = 6;

function buildCallout(app) {
  const usage = app.me && app.me.usage && app.me.usage.companions;
  const full = usage && usage.limit !== null && usage.used >= usage.limit;
  return h(
    "aside",
    { class: "cta-card", "aria-labelledby": "cta-title" },
    h("span", { class: "cta-card__badge" }, icon("sparkle", { size: 16 }), "Start learning your way"),
    h("h2", { id: "cta-title" }, "Build a companion for any topic"),
    h(
      "p",
      {},
      "Pick a subject, a topic, a voice and a style. Your companion teaches it out loud, at your pace.",
    ),
    h(
      "div",
      { class: "cta-card__art", "aria-hidden": "true" },
      ["maths", "science", "language", "coding", "history"].map((s) => subjectTile(s, "sm")),
    ),
    full
      ? h("a", { class: "btn btn--primary", href: "/plans" }, "See plans to build more")
      : h("a", { class: "btn btn--primary", href: "/companions/new" }, icon("plus"), "Build a new companion"),
  );
}

function welcome(app) {
  return h(
    "div",
    { class: "welcome" },
    h(
      "section",
      { class: "hero", "aria-labelledby": "hero-title" },
      h("p", { class: "eyebrow" }, "Your school's own voice tutor"),
      h("h1", { id: "hero-title" }, "Learn any topic by talking it through."),
      h(
        "p",
        { class: "hero__lead" },
        "Build a study companion, press start, and have a real spoken lesson. Everything runs on your school's server.",
      ),
      h(
        "div",
        { class: "hero__actions" },
        app.config.registration ? h("a", { class: "btn btn--primary btn--lg", href: "/signup" }, "Create your account") : null,
        h("a", { class: "btn btn--outline btn--lg", href: "/signin" }, "Sign in"),
      ),
    ),
    h(
      "ul",
      { class: "features", role: "list" },
      [
        ["sparkle", "Build a companion", "Choose a subject, topic, voice, style and lesson length."],
        ["mic", "Talk, don't type", "Ask questions out loud and hear answers straight away."],
        ["transcript", "Keep every lesson", "Each lesson's transcript is saved in your journey."],
      ].map(([ic, title, text]) =>
        h("li", { class: "feature card" }, h("span", { class: "feature__icon" }, icon(ic, { size: 22 })), h("h2", {}, title), h("p", {}, text)),
      ),
    ),
  );
}

export async function homeView(ctx) {
  const { app, signal } = ctx;
  if (!app.me) return { title: "Welcome", el: welcome(app) };

  // Popular means taught: only companions that have had lessons, most first. Recently completed: the learner's
  // own finished lessons, each with the length it really had.
  const [popular, lessons] = await Promise.all([
    get("/api/companions?sort=popular&taught=true&limit=3&page=1", { signal }),
    get("/api/me/lessons?limit=20", { signal }),
  ]);
  const finished = lessons.items.filter((lesson) => lesson.ended_at).slice(0, RECENT_LESSONS);
  const first = app.me.name.split(" ")[0];
  const greeting = isNewAccount(app.me) ? `Welcome, ${first}` : `Welcome back, ${first}`;
  const el = h(
    "div",
    { class: "stack-lg" },
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("p", { class: "eyebrow" }, "Dashboard"), h("h1", {}, greeting)),
      h(
        "div",
        { class: "page-head__actions" },
        h("a", { class: "btn btn--outline", href: "/companions" }, icon("search"), "Find companions"),
        h("a", { class: "btn btn--primary", href: "/companions/new" }, icon("plus"), "Build a companion"),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "popular-title", class: "stack" },
      sectionHeader("Popular companions", {
        id: "popular-title",
        action: h("a", { class: "link-arrow", href: "/companions?sort=popular" }, "See all", icon("arrowRight", { size: 16 })),
      }),
      popular.items.length
        ? companionGrid(popular.items, app, { idSuffix: "-popular" })
        : emptyState({
            iconName: "sparkle",
            title: "No lessons held yet",
            text: "Companions show up here once learners have had lessons with them. Find one in the library.",
            action: h("a", { class: "btn btn--outline", href: "/companions" }, "Browse the library"),
          }),
    ),
    h(
      "div",
      { class: "split" },
      h(
        "section",
        { "aria-labelledby": "recent-title", class: "card stack" },
        sectionHeader("Recently completed lessons", { id: "recent-title" }),
        finished.length
          ? h("ul", { class: "row-list", role: "list" }, finished.map(lessonRow))
          : emptyState({ iconName: "clock", title: "No lessons yet", text: "Your lessons appear here once they finish." }),
        finished.length ? h("a", { class: "link-arrow", href: "/journey#my-lessons" }, "All my lessons", icon("arrowRight", { size: 16 })) : null,
      ),
      buildCallout(app),
    ),
  );
  return { title: "Home", el };
}
