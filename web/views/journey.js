// My journey: profile, counts, my lessons (each opening its transcript), my companions, my bookmarks.

import { get } from "../api.js";
import { capitalize, formatDate, h, initials } from "../dom.js";
import { companionGrid, emptyState, lessonRow, sectionHeader, usageMeter } from "../components.js";
import { icon } from "../icons.js";
import { factsPanel } from "../recap.js";

function stat(value, label, iconName) {
  return h(
    "div",
    { class: "stat card" },
    h("span", { class: "stat__icon" }, icon(iconName, { size: 22 })),
    h("span", { class: "stat__value" }, String(value)),
    h("span", { class: "stat__label" }, label),
  );
}

/** A lesson's row, with what its recap says it covered (once written). */
function lessonWithRecap(lesson) {
  const row = lessonRow(lesson);
  if (lesson.recap_summary) {
    row.querySelector(".row-item__body").append(h("span", { class: "row-item__recap" }, lesson.recap_summary));
  }
  return row;
}

/** Per companion, how many review questions of its past recaps the learner has answered right in a quiz. */
function reviewProgress(progress) {
  const rows = progress.companions.map((p) => {
    const summary = `${p.answered_right} of ${p.total} review questions answered right`;
    const fill = h("span", { class: "review__fill" });
    fill.style.setProperty("--done", String(p.total ? (100 * p.answered_right) / p.total : 0));
    return h(
      "div",
      { class: "review" },
      h(
        "p",
        { class: "review__title" },
        h("a", { href: `/companions/${p.companion.id}` }, p.companion.name),
        h("span", { class: "muted" }, ` · ${summary}`),
      ),
      h(
        "div",
        {
          class: "review__bar",
          role: "progressbar",
          "aria-label": `${p.companion.name}: ${summary}`,
          "aria-valuemin": "0",
          "aria-valuemax": String(p.total),
          "aria-valuenow": String(p.answered_right),
        },
        fill,
      ),
      h(
        "details",
        { class: "review__details" },
        h("summary", {}, "Show the questions"),
        h(
          "ul",
          { class: "review__questions", role: "list" },
          p.questions.map((q) =>
            h(
              "li",
              { class: q.answered_right ? "is-right" : "" },
              h("span", {}, q.question),
              h("span", { class: "muted" }, q.answered_right ? "Answered right" : "Not yet"),
            ),
          ),
        ),
      ),
    );
  });
  return h(
    "section",
    { class: "card stack", "aria-labelledby": "my-review" },
    sectionHeader("Review questions", { id: "my-review" }),
    rows.length
      ? h("div", { class: "review-list" }, rows)
      : emptyState({
          iconName: "check",
          title: "No review questions yet",
          text: "Each lesson's recap adds review questions; a companion that quizzes asks them and keeps score here.",
        }),
  );
}

export async function journeyView(ctx) {
  const { app, signal } = ctx;
  // Asked alongside the rest; a server without it (or a failure) leaves the section out.
  const progressLoad = get("/api/me/progress", { signal }).catch(() => null);
  const [me, lessons, mine, bookmarks, facts] = await Promise.all([
    app.refreshMe(),
    get("/api/me/lessons?limit=50", { signal }),
    get("/api/me/companions", { signal }),
    get("/api/me/bookmarks", { signal }),
    get("/api/me/facts", { signal }),
  ]);
  if (!me) return { title: "My journey", el: h("p", {}, "Please sign in.") };
  const progress = await progressLoad;

  const bookmarksGrid = h("div");
  const drawBookmarks = () => {
    const items = bookmarks.items.filter((c) => c.bookmarked !== false);
    bookmarksGrid.replaceChildren(
      items.length
        ? companionGrid(items, app, { idSuffix: "-bm", onBookmarkChange: () => {} })
        : emptyState({
            iconName: "bookmark",
            title: "No bookmarks yet",
            text: "Tap the bookmark on any companion to keep it here.",
            action: h("a", { class: "btn btn--outline", href: "/companions" }, "Browse the library"),
          }),
    );
  };
  drawBookmarks();

  const el = h(
    "div",
    { class: "stack-lg" },
    h(
      "section",
      { class: "profile card", "aria-labelledby": "profile-name" },
      h("span", { class: "avatar avatar--xl", "aria-hidden": "true" }, initials(me.name)),
      h(
        "div",
        { class: "profile__body" },
        h("p", { class: "eyebrow" }, "My journey"),
        h("h1", { id: "profile-name" }, me.name),
        h("p", { class: "muted" }, me.email),
        h(
          "p",
          { class: "profile__meta" },
          h("span", { class: "badge badge--plan" }, `${capitalize(me.plan)} plan`),
          me.is_admin ? h("span", { class: "badge" }, "Admin") : null,
          h("span", { class: "muted" }, `Member since ${formatDate(me.created_at)}`),
        ),
      ),
      h(
        "div",
        { class: "profile__usage" },
        usageMeter("Companions", me.usage.companions),
        usageMeter("Lessons", me.usage.lessons),
        h("a", { class: "link-arrow", href: "/plans" }, "Plans and limits", icon("arrowRight", { size: 16 })),
      ),
    ),
    h(
      "div",
      { class: "stats" },
      stat(me.stats.lessons_done, "Lessons done", "check"),
      stat(me.stats.companions_built, "Companions built", "sparkle"),
      stat(bookmarks.items.length, "Bookmarks", "bookmark"),
    ),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "my-lessons", id: "my-lessons-section" },
      sectionHeader("My lessons", { id: "my-lessons" }),
      lessons.items.length
        ? h("ul", { class: "row-list", role: "list" }, lessons.items.map(lessonWithRecap))
        : emptyState({
            iconName: "mic",
            title: "No lessons yet",
            text: "Start a lesson with any companion; its transcript will be kept here.",
            action: h("a", { class: "btn btn--primary", href: "/companions" }, "Find a companion"),
          }),
    ),
    factsPanel(facts.facts),
    progress ? reviewProgress(progress) : null,
    h(
      "section",
      { class: "stack", "aria-labelledby": "my-companions" },
      sectionHeader("My companions", {
        id: "my-companions",
        action: h("a", { class: "btn btn--outline btn--sm", href: "/companions/new" }, icon("plus", { size: 16 }), "Build"),
      }),
      mine.items.length
        ? companionGrid(mine.items, app, { idSuffix: "-mine" })
        : emptyState({
            iconName: "sparkle",
            title: "You haven't built a companion yet",
            action: h("a", { class: "btn btn--primary", href: "/companions/new" }, "Build your first companion"),
          }),
    ),
    h("section", { class: "stack", "aria-labelledby": "my-bookmarks" }, sectionHeader("My bookmarks", { id: "my-bookmarks" }), bookmarksGrid),
  );
  return {
    title: "My journey",
    el,
    mounted: () => {
      if (location.hash === "#my-lessons") document.getElementById("my-lessons-section").scrollIntoView();
    },
  };
}
