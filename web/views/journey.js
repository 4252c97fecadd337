// My journey: profile, counts, my lessons (each opening its transcript), my companions, my bookmarks.

import { get } from "../api.js";
import { capitalize, formatDate, h, initials } from "../dom.js";
import { companionGrid, emptyState, lessonRow, sectionHeader, usageMeter } from "../components.js";
import { icon } from "../icons.js";

function stat(value, label, iconName) {
  return h(
    "div",
    { class: "stat card" },
    h("span", { class: "stat__icon" }, icon(iconName, { size: 22 })),
    h("span", { class: "stat__value" }, String(value)),
    h("span", { class: "stat__label" }, label),
  );
}

export async function journeyView(ctx) {
  const { app, signal } = ctx;
  const [me, lessons, mine, bookmarks] = await Promise.all([
    app.refreshMe(),
    get("/api/me/lessons?limit=50", { signal }),
    get("/api/me/companions", { signal }),
    get("/api/me/bookmarks", { signal }),
  ]);
  if (!me) return { title: "My journey", el: h("p", {}, "Please sign in.") };

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
        ? h("ul", { class: "row-list", role: "list" }, lessons.items.map(lessonRow))
        : emptyState({
            iconName: "mic",
            title: "No lessons yet",
            text: "Start a lesson with any companion; its transcript will be kept here.",
            action: h("a", { class: "btn btn--primary", href: "/companions" }, "Find a companion"),
          }),
    ),
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
