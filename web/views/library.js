// The companion library: search by topic or name, subject filter, sort, pagination; all of it kept in the URL.

import { get, withQuery } from "../api.js";
import { announce, capitalize, h, plural } from "../dom.js";
import { companionGrid, emptyState, pagination } from "../components.js";
import { icon } from "../icons.js";
import { classCompanionsSection } from "./join.js"; // school console: class companions first

const PAGE_SIZE = 9;
const SORTS = [
  ["recent", "Newest"],
  ["popular", "Most popular"],
  ["name", "Name (A–Z)"],
];

function readState(query) {
  const page = Number.parseInt(query.get("page") || "1", 10);
  const sort = query.get("sort") || "recent";
  return {
    q: (query.get("q") || "").trim(),
    subject: query.get("subject") || "",
    sort: SORTS.some(([id]) => id === sort) ? sort : "recent",
    page: Number.isFinite(page) && page > 0 ? page : 1,
  };
}

function urlFor(state) {
  return withQuery("/companions", {
    q: state.q,
    subject: state.subject,
    sort: state.sort === "recent" ? "" : state.sort,
    page: state.page > 1 ? state.page : "",
  });
}

export async function libraryView(ctx) {
  const { app, query } = ctx;
  let state = readState(query);
  let requestId = 0;
  let typingTimer = 0;

  const searchInput = h("input", {
    type: "search",
    id: "library-search",
    name: "q",
    value: state.q,
    placeholder: "e.g. fractions, photosynthesis…",
    autocomplete: "off",
  });
  const subjectSelect = h(
    "select",
    { id: "library-subject", name: "subject" },
    h("option", { value: "" }, "All subjects"),
    app.config.subjects.map((s) => h("option", { value: s, selected: s === state.subject }, capitalize(s))),
  );
  const sortSelect = h(
    "select",
    { id: "library-sort", name: "sort" },
    SORTS.map(([id, label]) => h("option", { value: id, selected: id === state.sort }, label)),
  );
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Find companions" },
    h(
      "div",
      { class: "filters__search" },
      h("label", { for: "library-search", class: "field__label" }, "Search by topic or name"),
      h("div", { class: "input-icon" }, icon("search", { size: 18 }), searchInput),
    ),
    h("div", { class: "filters__select" }, h("label", { for: "library-subject", class: "field__label" }, "Subject"), subjectSelect),
    h("div", { class: "filters__select" }, h("label", { for: "library-sort", class: "field__label" }, "Sort by"), sortSelect),
    h("button", { type: "submit", class: "btn btn--dark filters__submit" }, "Search"),
  );
  const status = h("p", { class: "results-status", role: "status", "aria-live": "polite" });
  const results = h("div", { class: "results", "aria-busy": "true" });

  async function load() {
    const mine = ++requestId;
    results.setAttribute("aria-busy", "true");
    const data = await get(
      withQuery("/api/companions", {
        topic: state.q,
        subject: state.subject,
        sort: state.sort,
        page: state.page,
        limit: PAGE_SIZE,
      }),
      { signal: ctx.signal },
    );
    if (mine !== requestId) return; // a newer search already answered
    const filtered = Boolean(state.q || state.subject);
    status.textContent = filtered
      ? `${plural(data.total, "companion")} found${state.q ? ` for “${state.q}”` : ""}${
          state.subject ? ` in ${capitalize(state.subject)}` : ""
        }`
      : `${plural(data.total, "companion")} in the library`;
    results.replaceChildren(
      data.items.length
        ? companionGrid(data.items, app, { headingLevel: "h2" }) // the cards sit straight under the h1
        : emptyState({
            iconName: "search",
            title: filtered ? "No companions match" : "The library is empty",
            text: filtered ? "Try another word or subject, or build the companion you're looking for." : "Build the first one!",
            action: h("a", { class: "btn btn--primary", href: "/companions/new" }, icon("plus"), "Build a companion"),
          }),
      pagination({ page: data.page, limit: data.limit, total: data.total, hrefFor: (p) => urlFor({ ...state, page: p }) }) || "",
    );
    results.removeAttribute("aria-busy");
  }

  /** Apply the form to the URL: a new history entry for each search, except while typing continues. */
  function apply({ typing = false } = {}) {
    const next = {
      q: searchInput.value.trim(),
      subject: subjectSelect.value,
      sort: sortSelect.value,
      page: 1,
    };
    if (next.q === state.q && next.subject === state.subject && next.sort === state.sort && state.page === 1) return;
    state = next;
    const url = urlFor(state);
    const continuing = typing && history.state && history.state.typing;
    if (continuing) history.replaceState({ typing: true }, "", url);
    else history.pushState(typing ? { typing: true } : null, "", url);
    load().catch((err) => {
      if (err.name !== "AbortError") app.toast(err.message, { tone: "error" });
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typingTimer);
    apply();
    announce("Search updated");
  });
  searchInput.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = window.setTimeout(() => apply({ typing: true }), 350);
  });
  subjectSelect.addEventListener("change", () => apply());
  sortSelect.addEventListener("change", () => apply());

  await load();
  const el = h(
    "div",
    { class: "stack-lg" },
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("p", { class: "eyebrow" }, "Library"), h("h1", {}, "Companion library")),
      h("div", { class: "page-head__actions" }, h("a", { class: "btn btn--primary", href: "/companions/new" }, icon("plus"), "Build a companion")),
    ),
    form,
    status,
    results,
  );
  // -- school console: the learner's class companions come first (drawn by web/views/join.js) --
  const fromClasses = await classCompanionsSection(app, ctx.signal);
  if (fromClasses) el.insertBefore(fromClasses, form);
  // -- end school console --
  return { title: "Companion library", el, cleanup: () => clearTimeout(typingTimer) };
}
