// The teacher's console: classes, a class's roster and companions, a learner's lessons, transcripts and flags.

import { ApiError, del, get, patch, post, put, withQuery } from "../api.js";
import { announce, capitalize, formatDate, formatDateTime, formatLength, h, plural } from "../dom.js";
import { emptyState, endReasonInfo, field, formAlert, sectionHeader, subjectBadge } from "../components.js";
import { icon, subjectLook, subjectTile } from "../icons.js";

// -- pieces the administrator's console shares ----------------------------------------------------------------

/** A table that scrolls sideways on a narrow screen instead of squeezing its columns. */
export function dataTable({ id, caption, columns, rows, captionHidden = false }) {
  const captionId = `${id}-caption`;
  return h(
    "div",
    { class: "table-scroll", role: "region", "aria-labelledby": captionId, tabindex: "0" },
    h(
      "table",
      { class: "data-table", id },
      h("caption", { id: captionId, class: captionHidden ? "visually-hidden" : "data-table__caption" }, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.className || null }, c.label)))),
      h("tbody", {}, rows),
    ),
  );
}

const SEVERITY_TONE = { high: "error", medium: "warn", low: "info" };

export function severityBadge(severity) {
  return h("span", { class: `badge badge--${SEVERITY_TONE[severity] || "info"}` }, `${capitalize(severity)} severity`);
}

const CATEGORY_WORDS = {
  self_harm: "Self-harm",
  abuse: "Abuse",
  sexual: "Sexual content",
  personal_data: "Personal data",
};

export function categoryText(category) {
  return CATEGORY_WORDS[category] || capitalize(String(category || "").replace(/_/g, " "));
}

const ACTION_WORDS = {
  replaced: "Reply replaced before it was spoken",
  support: "Support message given",
  none: "Recorded",
};

/**
 * The flags table (a class's, or the school's for an administrator). `lessonHref(flag)` links each flag to its
 * transcript where the viewer may open it.
 */
export function flagsTable(flags, { id, caption, lessonHref = null }) {
  return dataTable({
    id,
    caption,
    columns: [
      { label: "When" },
      { label: "Learner" },
      { label: "Said by" },
      { label: "What was said", className: "data-table__wide" },
      { label: "Category" },
      { label: "What happened" },
      { label: "Lesson" },
    ],
    rows: flags.map((flag) =>
      h(
        "tr",
        { dataset: { flagId: flag.id, severity: flag.severity } },
        h("td", { class: "data-table__date" }, formatDateTime(flag.created_at)),
        h("td", {}, flag.learner ? flag.learner.name : "—"),
        h("td", {}, flag.role === "user" ? "Learner" : `Tutor${flag.companion_name ? ` (${flag.companion_name})` : ""}`),
        h("td", { class: "flag-text" }, flag.text ? h("q", {}, flag.text) : h("span", { class: "muted" }, "Words deleted with the transcript")),
        h("td", {}, h("span", { class: "flag-category" }, categoryText(flag.category)), " ", severityBadge(flag.severity)),
        h("td", {}, ACTION_WORDS[flag.action] || capitalize(flag.action || "")),
        h(
          "td",
          {},
          lessonHref && flag.lesson_id
            ? h(
                "a",
                { href: lessonHref(flag), "aria-label": `Transcript of the lesson where ${flag.learner ? flag.learner.name : "the learner"} was flagged on ${formatDateTime(flag.created_at)}` },
                "Transcript",
              )
            : "—",
        ),
      ),
    ),
  });
}

/** A list of unread/read alerts with a "mark read" button each; `onRead` redraws the caller's count. */
export function alertsList(alerts, app, { lessonHref = null, onRead = null } = {}) {
  return h(
    "ul",
    { class: "row-list alert-list", role: "list" },
    alerts.map((alert) => {
      const flag = alert.flag || {};
      const unread = !alert.read_at;
      const item = h("li", { class: `row-item alert-item${unread ? " alert-item--unread" : ""}`, dataset: { alertId: alert.id } });
      const state = h("span", { class: `badge badge--${unread ? "error" : "info"}` }, unread ? "New" : "Read");
      const readButton = unread
        ? h(
            "button",
            {
              type: "button",
              class: "btn btn--outline btn--sm",
              "aria-label": `Mark the alert about ${flag.learner ? flag.learner.name : "a learner"} as read`,
              onclick: async () => {
                readButton.disabled = true;
                try {
                  await post(`/api/safety/alerts/${alert.id}/read`);
                  alert.read_at = new Date().toISOString();
                  item.classList.remove("alert-item--unread");
                  state.replaceChildren("Read");
                  // The button goes; focus stays on what replaced it rather than falling to the page.
                  const done = h("span", { class: "muted small", tabindex: "-1" }, "Marked read");
                  readButton.replaceWith(done);
                  done.focus();
                  announce("Alert marked read");
                  if (onRead) onRead();
                } catch (err) {
                  readButton.disabled = false;
                  app.toast(err.message, { tone: "error" });
                }
              },
            },
            icon("check", { size: 16 }),
            "Mark read",
          )
        : null;
      item.append(
        h("span", { class: "alert-item__icon", "aria-hidden": "true" }, icon("alert", { size: 20 })),
        h(
          "div",
          { class: "row-item__body" },
          h(
            "span",
            { class: "row-item__title" },
            `${categoryText(flag.category)}: ${flag.learner ? flag.learner.name : "a learner"}`,
          ),
          h("span", { class: "row-item__sub" }, h("q", {}, flag.text || ""), ` · ${formatDateTime(alert.created_at)}`),
        ),
        state,
        lessonHref && flag.lesson_id ? h("a", { class: "btn btn--ghost btn--sm", href: lessonHref(flag) }, "Transcript") : null,
        readButton,
      );
      return item;
    }),
  );
}

/** Load something optional for a screen; a part of the back end that is missing or failing shows as a note. */
async function optional(promise) {
  try {
    return { data: await promise };
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    return { error: err instanceof ApiError ? err.message : "This could not be loaded." };
  }
}

function usagePart(label, u) {
  if (!u) return `${label}: —`;
  return u.limit === null || u.limit === undefined ? `${u.used} ${label} (no limit)` : `${u.used} of ${u.limit} ${label}`;
}

function usageText(usage) {
  return `${usagePart("lessons", usage && usage.lessons)} · ${usagePart("companions", usage && usage.companions)}`;
}

function atLimit(usage) {
  return ["lessons", "companions"].some((k) => {
    const u = usage && usage[k];
    return u && u.limit !== null && u.limit !== undefined && u.used >= u.limit;
  });
}

function joinLink(code) {
  return `${location.origin}/join?code=${encodeURIComponent(code)}`;
}

const classHref = (id) => `/teach/classes/${id}`;
const transcriptHref = (classId, lessonId, learnerId) =>
  withQuery(`/teach/classes/${classId}/lessons/${lessonId}`, { learner: learnerId });

function consoleHead({ eyebrow, title, back = null, actions = null, id = null }) {
  return h(
    "div",
    { class: "stack" },
    back ? h("a", { class: "link-back", href: back.href }, icon("arrowLeft", { size: 16 }), back.label) : null,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("p", { class: "eyebrow" }, eyebrow), h("h1", { id }, title)),
      actions ? h("div", { class: "page-head__actions" }, actions) : null,
    ),
  );
}

// -- /teach: the teacher's classes ----------------------------------------------------------------------------

export async function teachView(ctx) {
  const { app, signal } = ctx;
  const [{ classes }, alerts] = await Promise.all([
    get("/api/classes", { signal }),
    optional(get("/api/safety/alerts", { signal })),
  ]);
  const isAdmin = app.me && app.me.role === "admin";

  const nameInput = h("input", { type: "text", name: "name", required: true, maxlength: "100", autocomplete: "off", placeholder: "e.g. Year 7 Science" });
  const formSlot = h("div", { class: "form-alert-slot" });
  const form = h(
    "form",
    { class: "console-inline-form", "aria-labelledby": "new-class-title", novalidate: true },
    h("h2", { id: "new-class-title" }, "Create a class"),
    field({ id: "class-name", label: "Class name", control: nameInput }),
    h("button", { type: "submit", class: "btn btn--primary" }, icon("plus", { size: 18 }), "Create class"),
    formSlot,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      formSlot.replaceChildren(formAlert("Give the class a name."));
      nameInput.setAttribute("aria-invalid", "true");
      nameInput.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await post("/api/classes", { name });
      app.toast(`Class “${created.name}” created. Its join code is ${created.join_code}.`);
      app.navigate(classHref(created.id));
    } catch (err) {
      formSlot.replaceChildren(formAlert(err.message));
      button.disabled = false;
    }
  });

  const list = classes.length
    ? dataTable({
        id: "classes-table",
        caption: isAdmin ? "Every class in the school" : "Your classes",
        captionHidden: true,
        columns: [
          { label: "Class" },
          ...(isAdmin ? [{ label: "Teacher" }] : []),
          { label: "Join code" },
          { label: "Learners" },
          { label: "Companions" },
          { label: "Created" },
        ],
        rows: classes.map((c) =>
          h(
            "tr",
            { dataset: { classId: c.id } },
            h("td", {}, h("a", { href: classHref(c.id), class: "data-table__title" }, c.name)),
            isAdmin ? h("td", {}, c.teacher ? c.teacher.name : "—") : null,
            h("td", {}, h("code", { class: "join-code join-code--sm" }, c.join_code || "—")),
            h("td", {}, String(c.learners_count)),
            h("td", {}, String(c.companions_count)),
            h("td", {}, formatDate(c.created_at)),
          ),
        ),
      })
    : emptyState({
        iconName: "school",
        title: "No classes yet",
        text: "Create a class, then give its join code to your learners.",
      });

  let alertsSection = null;
  if (alerts.data) {
    const countBadge = h("span", { class: "badge badge--error", hidden: !alerts.data.unread }, `${alerts.data.unread} new`);
    let unread = alerts.data.unread;
    alertsSection = h(
      "section",
      { class: "card stack", "aria-labelledby": "alerts-title", id: "alerts" },
      sectionHeader("Safety alerts", { id: "alerts-title", action: countBadge }),
      alerts.data.alerts.length
        ? alertsList(alerts.data.alerts, app, {
            lessonHref: null,
            onRead: () => {
              unread = Math.max(0, unread - 1);
              countBadge.textContent = `${unread} new`;
              countBadge.hidden = !unread;
            },
          })
        : emptyState({ iconName: "check", title: "No alerts", text: "High-severity flags in your classes' lessons appear here." }),
    );
  } else if (alerts.error) {
    alertsSection = h("section", { class: "card", "aria-labelledby": "alerts-title" }, h("h2", { id: "alerts-title" }, "Safety alerts"), h("p", { class: "muted" }, alerts.error));
  }

  const el = h(
    "div",
    { class: "stack-lg console" },
    consoleHead({ eyebrow: "School console", title: isAdmin ? "Classes" : "Your classes" }),
    h(
      "div",
      { class: "console-split" },
      h("section", { class: "card stack", "aria-labelledby": "classes-title" }, sectionHeader(plural(classes.length, "class", "classes"), { id: "classes-title" }), list),
      h("div", { class: "card" }, form),
    ),
    alertsSection,
  );
  return { title: "Your classes", el };
}

// -- /teach/classes/<id>: one class -------------------------------------------------------------------------

async function companionChoices(signal, assigned) {
  // Everything the teacher can assign: their own companions first, then the library's.
  const [mine, library] = await Promise.all([
    get("/api/me/companions?limit=100&page=1", { signal }).catch(() => ({ items: [] })),
    get("/api/companions?sort=name&limit=100&page=1", { signal }).catch(() => ({ items: [] })),
  ]);
  const taken = new Set(assigned.map((c) => c.id));
  const seen = new Set();
  const out = [];
  for (const c of [...mine.items, ...library.items]) {
    if (seen.has(c.id) || taken.has(c.id)) continue;
    seen.add(c.id);
    out.push(c);
  }
  return out;
}

export async function classView(ctx) {
  const { app, params, signal } = ctx;
  const id = params.id;
  const [klass, flags] = await Promise.all([
    get(`/api/classes/${id}`, { signal }),
    optional(get(withQuery("/api/safety/flags", { class_id: id, limit: 50 }), { signal })),
  ]);
  const choices = await companionChoices(signal, klass.companions);
  const redraw = () => app.navigate(location.pathname + location.search, { force: true, keepFocus: true });

  // The join code, and a new one on request (the old one stops working).
  const codeBox = h("code", { class: "join-code", id: "join-code" }, klass.join_code);
  const expires = klass.join_code_expires_at
    ? `Works until ${formatDate(klass.join_code_expires_at)}.`
    : "Works until you make a new one.";
  const rotate = h(
    "button",
    {
      type: "button",
      class: "btn btn--outline btn--sm",
      id: "rotate-code",
      onclick: async () => {
        if (!window.confirm("Make a new join code? The current code stops working at once.")) return;
        rotate.disabled = true;
        try {
          const updated = await post(`/api/classes/${id}/join-code`);
          app.toast(`New join code: ${updated.join_code}. The old one no longer works.`);
          redraw();
        } catch (err) {
          rotate.disabled = false;
          app.toast(err.message, { tone: "error" });
        }
      },
    },
    icon("sparkle", { size: 16 }),
    "New code",
  );
  const joinCard = h(
    "section",
    { class: "card join-card", "aria-labelledby": "join-title" },
    h("h2", { id: "join-title" }, "Join code"),
    h("p", { class: "join-card__code" }, codeBox, rotate),
    h("p", { class: "muted small" }, expires, " Learners enter it at ", h("a", { href: `/join?code=${encodeURIComponent(klass.join_code)}` }, joinLink(klass.join_code)), "."),
  );

  // Roster.
  const roster = klass.learners.length
    ? dataTable({
        id: "roster",
        caption: `Learners in ${klass.name}`,
        captionHidden: true,
        columns: [
          { label: "Learner" },
          { label: "Plan" },
          { label: "Lessons" },
          { label: "Minutes" },
          { label: "Last active" },
          { label: "Companions used" },
          { label: "Usage against plan" },
          { label: "Actions" },
        ],
        rows: klass.learners.map((l) =>
          h(
            "tr",
            { dataset: { learnerId: l.id } },
            h(
              "td",
              {},
              h("a", { class: "data-table__title", href: `/teach/classes/${id}/learners/${l.id}` }, l.name),
              h("span", { class: "data-table__sub" }, l.email),
            ),
            h("td", {}, h("span", { class: "badge badge--plan" }, capitalize(l.plan))),
            h("td", { dataset: { col: "lessons" } }, String(l.lessons_count)),
            h("td", { dataset: { col: "minutes" } }, String(l.minutes)),
            h("td", { class: "data-table__date" }, l.last_active_at ? formatDateTime(l.last_active_at) : "Never"),
            h("td", {}, l.companions_used && l.companions_used.length ? l.companions_used.join(", ") : "—"),
            h(
              "td",
              { class: atLimit(l.usage) ? "usage-cell usage-cell--full" : "usage-cell" },
              h("span", { class: "usage-cell__line" }, usagePart("lessons", l.usage && l.usage.lessons)),
              h("span", { class: "usage-cell__line" }, usagePart("companions", l.usage && l.usage.companions)),
              atLimit(l.usage) ? h("span", { class: "badge badge--warn" }, "At limit") : null,
            ),
            h(
              "td",
              { class: "data-table__actions" },
              h("a", { class: "btn btn--ghost btn--sm", href: `/teach/classes/${id}/learners/${l.id}`, "aria-label": `Lessons of ${l.name}` }, icon("transcript", { size: 16 }), "Lessons"),
              h(
                "button",
                {
                  type: "button",
                  class: "btn btn--ghost btn--sm btn--danger-text",
                  "aria-label": `Remove ${l.name} from the class`,
                  onclick: async (event) => {
                    if (!window.confirm(`Remove ${l.name} from ${klass.name}? Their lessons stay theirs.`)) return;
                    event.currentTarget.disabled = true;
                    try {
                      await del(`/api/classes/${id}/learners/${l.id}`);
                      app.toast(`${l.name} left ${klass.name}.`);
                      redraw();
                    } catch (err) {
                      event.currentTarget.disabled = false;
                      app.toast(err.message, { tone: "error" });
                    }
                  },
                },
                "Remove",
              ),
            ),
          ),
        ),
      })
    : emptyState({
        iconName: "user",
        title: "No learners yet",
        text: "Give learners the join code, or add one by e-mail.",
      });

  const emailInput = h("input", { type: "email", name: "email", required: true, autocomplete: "off", placeholder: "learner@school.org" });
  const addSlot = h("div", { class: "form-alert-slot" });
  const addForm = h(
    "form",
    { class: "console-inline-form console-inline-form--row", novalidate: true },
    field({ id: "add-learner-email", label: "Add a learner by e-mail", control: emailInput }),
    h("button", { type: "submit", class: "btn btn--dark" }, icon("plus", { size: 18 }), "Add learner"),
    addSlot,
  );
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = emailInput.value.trim();
    if (!email) {
      addSlot.replaceChildren(formAlert("Enter the learner's e-mail address."));
      emailInput.focus();
      return;
    }
    try {
      const row = await post(`/api/classes/${id}/learners`, { email });
      app.toast(`${row.name} added to ${klass.name}.`);
      redraw();
    } catch (err) {
      const words = {
        learner_not_found: `No learner has the e-mail address ${email}. They need an account first.`,
        already_in_class: `${email} is already in this class.`,
        not_a_learner: `${email} is a teacher's or administrator's account; only learners join classes.`,
      };
      addSlot.replaceChildren(formAlert(words[err.code] || err.message));
      emailInput.focus();
    }
  });

  // Companions of the class: they show first in its learners' library.
  const companionsList = klass.companions.length
    ? h(
        "ul",
        { class: "row-list", role: "list", id: "class-companions" },
        klass.companions.map((c) =>
          h(
            "li",
            { class: "row-item", dataset: { companionId: c.id } },
            subjectTile(c.subject, "sm"),
            h(
              "div",
              { class: "row-item__body" },
              c.archived ? h("span", { class: "row-item__title" }, c.name) : h("a", { class: "row-item__title", href: `/companions/${c.id}` }, c.name),
              h("span", { class: "row-item__sub" }, c.topic, c.archived ? " · deleted from the library" : ""),
            ),
            h(
              "button",
              {
                type: "button",
                class: "btn btn--ghost btn--sm",
                "aria-label": `Unassign ${c.name}`,
                onclick: async (event) => {
                  event.currentTarget.disabled = true;
                  try {
                    await del(`/api/classes/${id}/companions/${c.id}`);
                    app.toast(`${c.name} is no longer assigned to ${klass.name}.`);
                    redraw();
                  } catch (err) {
                    event.currentTarget.disabled = false;
                    app.toast(err.message, { tone: "error" });
                  }
                },
              },
              "Unassign",
            ),
          ),
        ),
      )
    : emptyState({ iconName: "library", title: "No companions assigned", text: "Assigned companions show first in your learners' library." });

  const companionSelect = h(
    "select",
    { name: "companion" },
    h("option", { value: "" }, choices.length ? "Choose a companion…" : "No other companions to assign"),
    choices.map((c) => h("option", { value: String(c.id) }, `${c.name} · ${capitalize(c.subject)}: ${c.topic}`)),
  );
  const assignForm = h(
    "form",
    { class: "console-inline-form console-inline-form--row" },
    field({ id: "assign-companion", label: "Assign a companion", control: companionSelect }),
    h("button", { type: "submit", class: "btn btn--dark", disabled: !choices.length }, "Assign"),
  );
  assignForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const companionId = companionSelect.value;
    if (!companionId) {
      companionSelect.focus();
      return;
    }
    try {
      await put(`/api/classes/${id}/companions/${companionId}`);
      app.toast(`${companionSelect.selectedOptions[0].textContent.split(" · ")[0]} assigned to ${klass.name}.`);
      redraw();
    } catch (err) {
      app.toast(err.message, { tone: "error" });
    }
  });

  // Flags raised in the class's learners' lessons.
  let flagsBody;
  if (flags.error) flagsBody = h("p", { class: "muted" }, flags.error);
  else if (!flags.data.flags.length)
    flagsBody = emptyState({ iconName: "check", title: "No flags", text: "Nothing said in this class's lessons has been flagged." });
  else
    flagsBody = flagsTable(flags.data.flags, {
      id: "class-flags",
      caption: `Safety flags in ${klass.name}`,
      lessonHref: (flag) => transcriptHref(id, flag.lesson_id, flag.learner && flag.learner.id),
    });

  // Rename and delete.
  const renameInput = h("input", { type: "text", name: "name", value: klass.name, required: true, maxlength: "100" });
  const renameForm = h(
    "form",
    { class: "console-inline-form console-inline-form--row" },
    field({ id: "rename-class", label: "Class name", control: renameInput }),
    h("button", { type: "submit", class: "btn btn--outline" }, "Rename"),
  );
  renameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = renameInput.value.trim();
    if (!name || name === klass.name) return;
    try {
      await patch(`/api/classes/${id}`, { name });
      app.toast(`Class renamed to “${name}”.`);
      redraw();
    } catch (err) {
      app.toast(err.message, { tone: "error" });
    }
  });
  const deleteButton = h(
    "button",
    {
      type: "button",
      class: "btn btn--danger",
      id: "delete-class",
      onclick: async () => {
        const n = klass.learners.length;
        const question = n
          ? `Delete ${klass.name}? Its ${plural(n, "learner")} leave the class; their lessons, transcripts and history stay theirs.`
          : `Delete ${klass.name}? It has no learners.`;
        if (!window.confirm(question)) return;
        deleteButton.disabled = true;
        try {
          const result = await del(`/api/classes/${id}?confirm=true`);
          app.toast((result && result.message) || `${klass.name} deleted.`);
          app.navigate("/teach", { force: true });
        } catch (err) {
          deleteButton.disabled = false;
          app.toast(err.message, { tone: "error" });
        }
      },
    },
    icon("trash", { size: 18 }),
    "Delete class",
  );

  const totalMinutes = klass.learners.reduce((sum, l) => sum + (l.minutes || 0), 0);
  const totalLessons = klass.learners.reduce((sum, l) => sum + (l.lessons_count || 0), 0);
  const el = h(
    "div",
    { class: "stack-lg console", dataset: { classId: klass.id } },
    consoleHead({
      eyebrow: `Class · ${klass.teacher ? klass.teacher.name : ""}`,
      title: klass.name,
      back: { href: "/teach", label: "Your classes" },
    }),
    h(
      "div",
      { class: "console-split" },
      joinCard,
      h(
        "section",
        { class: "card console-facts", "aria-labelledby": "facts-title" },
        h("h2", { id: "facts-title" }, "At a glance"),
        h(
          "dl",
          { class: "facts" },
          h("div", {}, h("dt", {}, "Learners"), h("dd", {}, String(klass.learners.length))),
          h("div", {}, h("dt", {}, "Lessons"), h("dd", {}, String(totalLessons))),
          h("div", {}, h("dt", {}, "Minutes"), h("dd", {}, String(totalMinutes))),
          h("div", {}, h("dt", {}, "Flags"), h("dd", {}, flags.data ? String(flags.data.flags.length) : "—")),
        ),
      ),
    ),
    h("section", { class: "card stack", "aria-labelledby": "roster-title" }, sectionHeader("Learners", { id: "roster-title" }), roster, addForm),
    h("section", { class: "card stack", "aria-labelledby": "flags-title", id: "flags" }, sectionHeader("Safety flags", { id: "flags-title" }), flagsBody),
    h("section", { class: "card stack", "aria-labelledby": "companions-title" }, sectionHeader("Class companions", { id: "companions-title", action: h("a", { class: "btn btn--outline btn--sm", href: "/companions/new" }, icon("plus", { size: 16 }), "Build a companion") }), companionsList, assignForm),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "settings-title" },
      h("h2", { id: "settings-title" }, "Class settings"),
      renameForm,
      h("div", { class: "danger-zone" }, h("p", { class: "muted" }, "Deleting the class releases its learners. Their lessons, transcripts and history stay theirs."), deleteButton),
    ),
  );
  return { title: klass.name, el };
}

// -- /teach/classes/<id>/learners/<learnerId>: one learner's lessons ------------------------------------------

export async function learnerLessonsView(ctx) {
  const { params, signal } = ctx;
  const [klass, { lessons }] = await Promise.all([
    get(`/api/classes/${params.id}`, { signal }),
    get(`/api/classes/${params.id}/learners/${params.learnerId}/lessons`, { signal }),
  ]);
  const learner = klass.learners.find((l) => String(l.id) === String(params.learnerId));
  const name = learner ? learner.name : "This learner";
  const rows = lessons.map((lesson) => {
    const companion = lesson.companion || { name: "A deleted companion", subject: "" };
    const info = endReasonInfo(lesson.end_reason, { duration: companion.duration });
    const href = transcriptHref(params.id, lesson.id, params.learnerId);
    return h(
      "li",
      { class: "row-item", dataset: { lessonId: lesson.id } },
      companion.subject ? subjectTile(companion.subject, "sm") : h("span", { class: "subject-tile subject-tile--sm" }),
      h(
        "div",
        { class: "row-item__body" },
        h("a", { class: "row-item__title", href, "aria-label": `Transcript of ${name}'s lesson with ${companion.name} on ${formatDateTime(lesson.started_at)}` }, companion.name),
        h("span", { class: "row-item__sub" }, `${formatDateTime(lesson.started_at)} · ${lesson.ended_at ? formatLength(lesson.length_seconds) : "not finished"}`),
      ),
      h("span", { class: `badge badge--${lesson.ended_at ? info.tone : "live"}` }, lesson.ended_at ? info.short : "In progress"),
    );
  });
  const el = h(
    "div",
    { class: "stack-lg console" },
    consoleHead({ eyebrow: klass.name, title: `${name}'s lessons`, back: { href: classHref(klass.id), label: klass.name } }),
    learner
      ? h(
          "dl",
          { class: "facts card" },
          h("div", {}, h("dt", {}, "Lessons"), h("dd", {}, String(learner.lessons_count))),
          h("div", {}, h("dt", {}, "Minutes"), h("dd", {}, String(learner.minutes))),
          h("div", {}, h("dt", {}, "Last active"), h("dd", {}, learner.last_active_at ? formatDateTime(learner.last_active_at) : "Never")),
          h("div", {}, h("dt", {}, "Plan"), h("dd", {}, `${capitalize(learner.plan)} · ${usageText(learner.usage)}`)),
        )
      : null,
    h(
      "section",
      { class: "card stack", "aria-labelledby": "learner-lessons-title" },
      sectionHeader("Lessons", { id: "learner-lessons-title" }),
      rows.length ? h("ul", { class: "row-list", role: "list", id: "learner-lessons" }, rows) : emptyState({ iconName: "mic", title: `${name} has no lessons yet` }),
    ),
  );
  return { title: `${name}'s lessons`, el };
}

// -- /teach/classes/<id>/lessons/<lessonId>: a transcript, read by the teacher (and so audited) ---------------

export async function classLessonView(ctx) {
  const { params, query, signal } = ctx;
  const learnerId = query.get("learner");
  const [lesson, klass, flags] = await Promise.all([
    get(`/api/classes/${params.id}/lessons/${params.lessonId}`, { signal }),
    get(`/api/classes/${params.id}`, { signal }),
    optional(get(withQuery("/api/safety/flags", { class_id: params.id, limit: 100 }), { signal })),
  ]);
  const companion = lesson.companion || { name: "A deleted companion", subject: "", topic: "" };
  const lessonFlags = flags.data ? flags.data.flags.filter((f) => String(f.lesson_id) === String(lesson.id)) : [];
  const learner =
    klass.learners.find((l) => String(l.id) === String(learnerId)) ||
    (lessonFlags[0] && lessonFlags[0].learner) ||
    null;
  const learnerName = learner ? learner.name : "Learner";
  const ended = Boolean(lesson.ended_at);
  const info = endReasonInfo(lesson.end_reason, { duration: companion.duration });
  const flaggedTexts = new Set(lessonFlags.map((f) => f.text));

  const sorted = [...(lesson.transcript || [])].sort((a, b) => a.order - b.order);
  const lines = [];
  for (const line of sorted) {
    const last = lines[lines.length - 1];
    const flagged = flaggedTexts.has(line.text);
    if (last && last.role === line.role) {
      last.text = `${last.text} ${line.text}`;
      last.flagged = last.flagged || flagged;
    } else lines.push({ role: line.role, text: line.text, flagged });
  }
  const transcript = lines.length
    ? h(
        "ol",
        { class: "transcript transcript--stored", "aria-labelledby": "teacher-transcript-title" },
        lines.map((line) =>
          h(
            "li",
            { class: `bubble bubble--${line.role === "user" ? "user" : "assistant"}${line.flagged ? " bubble--flagged" : ""}`, dataset: { role: line.role } },
            h("span", { class: "bubble__who" }, line.role === "user" ? learnerName : companion.name, line.flagged ? h("span", { class: "badge badge--error" }, "Flagged") : null),
            h("p", { class: "bubble__text" }, line.text),
          ),
        ),
      )
    : emptyState({ iconName: "transcript", title: "Nothing was said in this lesson", text: "The lesson ended before anyone spoke, or its transcript was deleted under the school's retention rule." });

  const el = h(
    "div",
    {
      class: "stack-lg console lesson-record",
      style: companion.subject ? { "--subject": subjectLook(companion.subject).colour, "--subject-accent": subjectLook(companion.subject).accent } : {},
    },
    h("a", { class: "link-back", href: learner ? `/teach/classes/${klass.id}/learners/${learner.id}` : classHref(klass.id) }, icon("arrowLeft", { size: 16 }), learner ? `${learner.name}'s lessons` : klass.name),
    h(
      "header",
      { class: "lesson-head card" },
      companion.subject ? subjectTile(companion.subject, "lg") : null,
      h(
        "div",
        { class: "lesson-head__body" },
        h(
          "div",
          { class: "lesson-head__badges" },
          companion.subject ? subjectBadge(companion.subject) : null,
          h("span", { class: `badge badge--${ended ? info.tone : "live"}` }, ended ? info.short : "In progress"),
          lessonFlags.length ? h("span", { class: "badge badge--error" }, plural(lessonFlags.length, "flag")) : null,
        ),
        h("h1", {}, `${learnerName === "Learner" ? "A learner" : learnerName}'s lesson with ${companion.name}`),
        companion.topic ? h("p", { class: "lesson-head__topic" }, companion.topic) : null,
        h(
          "p",
          { class: "lesson-head__meta muted" },
          h("span", {}, icon("clock", { size: 16 }), formatDateTime(lesson.started_at)),
          h("span", {}, ended ? `Length ${formatLength(lesson.length_seconds)}` : "Not finished"),
          h("span", {}, klass.name),
        ),
      ),
    ),
    h("p", { class: "audit-note" }, icon("info", { size: 18 }), "Opening a learner's transcript is written to the school's audit log, which administrators can read."),
    lessonFlags.length
      ? h(
          "section",
          { class: "card stack", "aria-labelledby": "lesson-flags-title" },
          sectionHeader("Flags in this lesson", { id: "lesson-flags-title" }),
          flagsTable(lessonFlags, { id: "lesson-flags", caption: "What was flagged, and what happened", lessonHref: null }),
        )
      : null,
    h(
      "section",
      { class: "card transcript-panel", "aria-labelledby": "teacher-transcript-title" },
      h("div", { class: "section-header" }, h("h2", { id: "teacher-transcript-title" }, "Transcript")),
      transcript,
    ),
  );
  return { title: `${learnerName}'s lesson with ${companion.name}`, el };
}
