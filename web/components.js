// Pieces several screens share: companion cards, bookmark toggles, form fields, pagination, usage meters.

import { ApiError, del, put } from "./api.js";
import { announce, capitalize, formatDateTime, formatLength, h, plural } from "./dom.js";
import { icon, subjectLook, subjectTile } from "./icons.js";
import { voiceName } from "./voices.js";

export function subjectBadge(subject) {
  const look = subjectLook(subject);
  return h(
    "span",
    { class: "subject-badge", style: { "--subject": look.colour, "--subject-accent": look.accent } },
    icon(look.icon, { size: 14 }),
    capitalize(subject),
  );
}

/**
 * A toggle button that bookmarks or un-bookmarks a companion, keeping aria-pressed in step.
 * Its name stays "Bookmark <name>" whatever the state (aria-pressed says which), and the visible word is part
 * of that name, so speech control ("click Bookmark") and screen readers agree with what is on screen.
 */
export function bookmarkButton(companion, app, { onChange, withText = false } = {}) {
  const button = h("button", { type: "button", class: `bookmark${withText ? " bookmark--text" : ""}` });
  let busy = false;
  const draw = () => {
    const on = companion.bookmarked;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.setAttribute("aria-label", `Bookmark ${companion.name}`);
    button.title = on ? "Bookmarked: press to remove the bookmark" : "Bookmark";
    button.replaceChildren(icon(on ? "bookmarkFilled" : "bookmark", { size: 20 }));
    if (withText) button.append(h("span", { "aria-hidden": "true" }, "Bookmark"));
  };
  draw();
  button.addEventListener("click", async () => {
    // aria-disabled, not disabled: a disabled button drops keyboard focus to <body> while the request runs.
    if (busy) return;
    const next = !companion.bookmarked;
    busy = true;
    button.setAttribute("aria-disabled", "true");
    try {
      const path = `/api/companions/${companion.id}/bookmark`;
      if (next) await put(path);
      else await del(path);
      companion.bookmarked = next;
      draw();
      announce(next ? `${companion.name} bookmarked` : `Bookmark removed from ${companion.name}`);
      if (onChange) onChange(next);
    } catch (err) {
      app.toast(err instanceof ApiError ? err.message : "Could not change the bookmark.", { tone: "error" });
    } finally {
      busy = false;
      button.removeAttribute("aria-disabled");
    }
  });
  return button;
}

/**
 * A library card: subject, bookmark toggle, name, topic, duration and a link to start a lesson.
 * `headingLevel` follows the screen's outline: "h3" under a section's h2, "h2" straight under the page's h1.
 */
export function companionCard(companion, app, options = {}) {
  const look = subjectLook(companion.subject);
  const titleId = `companion-${companion.id}-name${options.idSuffix || ""}`;
  return h(
    "article",
    {
      class: "companion-card",
      style: { "--subject": look.colour, "--subject-accent": look.accent },
      "aria-labelledby": titleId,
      dataset: { companionId: companion.id },
    },
    h(
      "div",
      { class: "companion-card__top" },
      subjectBadge(companion.subject),
      bookmarkButton(companion, app, { onChange: options.onBookmarkChange }),
    ),
    h(options.headingLevel || "h3", { class: "companion-card__name", id: titleId }, companion.name),
    h("p", { class: "companion-card__topic" }, companion.topic),
    h(
      "p",
      { class: "companion-card__meta" },
      h("span", {}, icon("clock", { size: 16 }), `${companion.duration} min`),
      h("span", {}, `${capitalize(companion.style)} · ${voiceName(app.config, companion)}`),
    ),
    h(
      "a",
      { class: "btn btn--dark btn--block", href: `/companions/${companion.id}`, "aria-describedby": titleId },
      icon("phone", { size: 18 }),
      "Launch lesson",
    ),
  );
}

export function companionGrid(items, app, options = {}) {
  return h(
    "ul",
    { class: "card-grid", role: "list" },
    items.map((c) => h("li", {}, companionCard(c, app, options))),
  );
}

/** A row for one of the learner's lessons (home, journey): companion, when, the lesson's own length, outcome. */
export function lessonRow(lesson) {
  const companion = lesson.companion || { name: "A deleted companion", subject: "", topic: "" };
  const info = endReasonInfo(lesson.end_reason, { duration: companion.duration });
  return h(
    "li",
    { class: "row-item", dataset: { lessonId: lesson.id } },
    companion.subject ? subjectTile(companion.subject, "sm") : h("span", { class: "subject-tile subject-tile--sm" }),
    h(
      "div",
      { class: "row-item__body" },
      h(
        "a",
        { class: "row-item__title", href: `/lessons/${lesson.id}`, "aria-label": `Transcript of the lesson with ${companion.name} on ${formatDateTime(lesson.started_at)}` },
        companion.name,
      ),
      h("span", { class: "row-item__sub" }, `${formatDateTime(lesson.started_at)} · ${lesson.ended_at ? formatLength(lesson.length_seconds) : "not finished"}`),
    ),
    h("span", { class: `badge badge--${lesson.ended_at ? info.tone : "live"}` }, lesson.ended_at ? info.short : "In progress"),
    h("a", { class: "btn btn--ghost btn--sm row-item__action", href: `/lessons/${lesson.id}`, tabindex: "-1", "aria-hidden": "true" }, icon("transcript", { size: 18 }), "Transcript"),
  );
}

export function emptyState({ iconName = "sparkle", title, text = "", action = null }) {
  return h(
    "div",
    { class: "empty" },
    h("span", { class: "empty__icon" }, icon(iconName, { size: 28 })),
    h("p", { class: "empty__title" }, title),
    text ? h("p", { class: "empty__text" }, text) : null,
    action,
  );
}

/** Previous / page x of y / next, as real links so they work with the History API and new tabs. */
export function pagination({ page, limit, total, hrefFor }) {
  const pages = Math.max(1, Math.ceil(total / limit));
  if (pages <= 1) return null;
  const prev = page > 1;
  const next = page < pages;
  return h(
    "nav",
    { class: "pagination", "aria-label": "Pages" },
    prev
      ? h("a", { class: "btn btn--ghost", href: hrefFor(page - 1), rel: "prev" }, icon("chevronLeft"), "Previous")
      : h("span", { class: "btn btn--ghost", "aria-disabled": "true" }, icon("chevronLeft"), "Previous"),
    h("span", { class: "pagination__status", "aria-current": "page" }, `Page ${page} of ${pages}`),
    next
      ? h("a", { class: "btn btn--ghost", href: hrefFor(page + 1), rel: "next" }, "Next", icon("chevronRight"))
      : h("span", { class: "btn btn--ghost", "aria-disabled": "true" }, "Next", icon("chevronRight")),
  );
}

/** A labelled form control with a slot for its validation message. */
export function field({ id, label, hint = "", control }) {
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : "";
  control.id = id;
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  return h(
    "div",
    { class: "field", dataset: { field: control.name } },
    h("label", { class: "field__label", for: id }, label),
    hint ? h("p", { class: "field__hint", id: hintId }, hint) : null,
    control,
    h("p", { class: "field__error", id: errorId, hidden: true }),
  );
}

/** A fieldset of radio "chips" (voice, style). */
export function choiceGroup({ name, legend, options, value }) {
  const errorId = `${name}-error`;
  return h(
    "fieldset",
    { class: "field choice-group", dataset: { field: name }, "aria-describedby": errorId },
    h("legend", { class: "field__label" }, legend),
    h(
      "div",
      { class: "choice-group__options" },
      options.map((opt) =>
        h(
          "label",
          { class: "choice" },
          h("input", { type: "radio", name, value: opt.value, checked: opt.value === value, required: true }),
          h("span", { class: "choice__box" }, opt.icon ? icon(opt.icon, { size: 18 }) : null, opt.label),
        ),
      ),
    ),
    h("p", { class: "field__error", id: errorId, hidden: true }),
  );
}

/** The server's validation wording (pydantic's) in plainer words for learners; unknown messages pass through. */
export function friendlyFieldMessage(message) {
  const text = String(message || "");
  if (/at least 1 character|field required|missing/i.test(text)) return "This is required.";
  if (/^Input should be '/.test(text)) return "Choose one of the options.";
  if (/at most (\d+) characters/i.test(text)) return `Keep it under ${text.match(/at most (\d+)/i)[1]} characters.`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Show the API's per-field messages next to their fields; returns the first control to focus. */
export function showFieldErrors(form, fields) {
  let first = null;
  for (const wrapper of form.querySelectorAll("[data-field]")) {
    const name = wrapper.dataset.field;
    const message = fields && fields[name] ? friendlyFieldMessage(fields[name]) : "";
    const error = wrapper.querySelector(".field__error");
    const controls = wrapper.querySelectorAll("input, select, textarea");
    if (error) {
      error.hidden = !message;
      error.replaceChildren(...(message ? [icon("alert", { size: 16 }), message] : []));
    }
    wrapper.classList.toggle("field--invalid", Boolean(message));
    controls.forEach((c) => (message ? c.setAttribute("aria-invalid", "true") : c.removeAttribute("aria-invalid")));
    if (message && !first) first = controls[0];
  }
  return first;
}

export function formAlert(message, tone = "error") {
  return h(
    "div",
    { class: `alert alert--${tone}`, role: tone === "error" ? "alert" : "status" },
    icon(tone === "error" ? "alert" : "info", { size: 20 }),
    h("div", {}, message),
  );
}

export function limitText(limit) {
  return limit === null || limit === undefined ? "Unlimited" : String(limit);
}

/** "3 of 10 used" with a bar; unlimited shows just the count. */
export function usageMeter(label, usage) {
  const { used, limit } = usage || { used: 0, limit: null };
  const unlimited = limit === null || limit === undefined;
  const ratio = unlimited ? 0 : Math.min(1, limit === 0 ? 1 : used / limit);
  const full = !unlimited && used >= limit;
  return h(
    "div",
    { class: `meter${full ? " meter--full" : ""}` },
    h(
      "div",
      { class: "meter__label" },
      h("span", {}, label),
      h("strong", {}, unlimited ? `${used} used · no limit` : `${used} of ${limit} used`),
    ),
    unlimited
      ? null
      : h(
          "div",
          {
            class: "meter__track",
            role: "progressbar",
            "aria-label": label,
            "aria-valuemin": "0",
            "aria-valuemax": String(limit),
            "aria-valuenow": String(Math.min(used, limit)),
          },
          h("span", { class: "meter__fill", style: { width: `${Math.round(ratio * 100)}%` } }),
        ),
  );
}

/** The learner-facing meaning of each way a lesson can end (ours and hosted Vapi's reasons). */
export function endReasonInfo(reason, { duration } = {}) {
  const minutes = duration ? plural(duration, "minute") : "its time";
  const r = String(reason || "");
  if (r === "customer-ended-call") {
    return { tone: "info", short: "You ended it", title: "Lesson ended", text: "You ended the lesson. Nice work!" };
  }
  if (r === "assistant-ended-call" || r === "exceeded-max-duration" || r === "assistant-said-end-call-phrase") {
    return {
      tone: "info",
      short: "Time's up",
      title: "Time's up",
      text: `The lesson reached its ${minutes}, so your tutor said goodbye.`,
    };
  }
  if (r === "silence-timed-out") {
    return {
      tone: "warn",
      short: "Ended after silence",
      title: "Ended after a long silence",
      text: "We didn't hear anything for a while, so the lesson stopped. Start a new one whenever you're ready.",
    };
  }
  if (r === "replaced-by-new-lesson") {
    return {
      tone: "info",
      short: "Continued elsewhere",
      title: "This lesson continued in another window",
      text: "You started a lesson in another tab or window. You can have one live lesson at a time, so this one ended.",
    };
  }
  if (r === "server-shutdown" || r === "server-restart") {
    return {
      tone: "warn",
      short: "Server restarted",
      title: "The tutor's server restarted",
      text: "The lesson stopped because the school's server was shut down or restarted. Start a new lesson in a minute.",
    };
  }
  if (r === "customer-disconnected" || r.includes("disconnect") || r.includes("websocket")) {
    return {
      tone: "error",
      short: "Connection lost",
      title: "Connection lost",
      text: "The connection to your tutor dropped. Check your network, then start the lesson again.",
    };
  }
  if (r === "llm-unavailable" || r.includes("llm") || r.includes("openai") || r.includes("model")) {
    return {
      tone: "error",
      short: "Tutor unavailable",
      title: "Your tutor can't answer right now",
      text: "Your tutor couldn't think of answers, so the lesson ended. Please try again later, or tell your teacher.",
    };
  }
  if (r === "lesson_limit_reached" || r === "lesson-limit-reached") {
    return {
      tone: "warn",
      short: "Lesson limit reached",
      title: "You've reached your plan's lesson limit",
      text: "Your plan has no lessons left. See the plans to keep learning.",
    };
  }
  if (r.startsWith("pipeline-error") || r.includes("error")) {
    return {
      tone: "error",
      short: "Server problem",
      title: "Something went wrong on the server",
      text: "The lesson stopped because of a problem on the server. Please try again in a moment.",
    };
  }
  if (!r) return { tone: "info", short: "In progress", title: "Lesson ended", text: "The lesson has ended." };
  return { tone: "info", short: "Ended", title: "Lesson ended", text: "The lesson has ended." };
}

export function sectionHeader(title, { id, action = null, level = "h2" } = {}) {
  return h("div", { class: "section-header" }, h(level, { id }, title), action);
}
