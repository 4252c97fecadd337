// A lesson's recap (what it covered, what was hard, review questions), written by the tutor after the lesson,
// and the list of what the tutor remembers about the learner, each with its delete button.

import { del, get, post } from "./api.js";
import { announce, h } from "./dom.js";
import { icon } from "./icons.js";

const POLL_MS = 1500;
// The page stops asking after this long; "Write it again" starts over.
const POLL_FOR_MS = 120000;

/**
 * The recap panel for one lesson: "Recap is being written…" until the recap is stored, then the recap, with a
 * "Write it again" button. `recap` is the lesson's recap as GET /api/lessons/{id} gives it (null: none yet).
 * `waitForIt`: poll while there is no recap yet (right after a lesson ends, before its end is handled).
 */
export function recapPanel(lessonId, recap, { waitForIt = false, headingLevel = "h2" } = {}) {
  const body = h("div", { class: "recap__body" });
  const panel = h(
    "section",
    { class: "card recap", "aria-labelledby": `recap-title-${lessonId}`, dataset: { lessonId } },
    h(headingLevel, { id: `recap-title-${lessonId}`, class: "recap__title" }, icon("sparkle", { size: 18 }), "Lesson recap"),
    h("div", { "aria-live": "polite" }, body),
  );
  let timer = null;
  let giveUpAt = 0;

  function again() {
    return h(
      "button",
      {
        type: "button",
        class: "btn btn--outline btn--sm recap__again",
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            draw(await post(`/api/lessons/${lessonId}/recap`), { polling: true });
          } catch (err) {
            body.append(h("p", { class: "recap__error", role: "alert" }, err.message));
          }
        },
      },
      icon("edit", { size: 16 }),
      "Write it again",
    );
  }

  function draw(current, { polling = false } = {}) {
    window.clearTimeout(timer);
    const waiting = !current || current.status === "pending";
    if (waiting) {
      body.replaceChildren(h("p", { class: "recap__pending muted" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Recap is being written…"));
      if (polling || current) {
        if (!giveUpAt) giveUpAt = Date.now() + POLL_FOR_MS;
        if (Date.now() < giveUpAt) timer = window.setTimeout(poll, POLL_MS);
        else body.replaceChildren(h("p", { class: "muted" }, "The recap is taking a while. Come back to this lesson later."), again());
      }
      return;
    }
    giveUpAt = 0;
    if (current.status === "too_short") {
      body.replaceChildren(h("p", { class: "recap__short" }, current.covered));
    } else if (current.status === "failed") {
      body.replaceChildren(h("p", { class: "recap__failed" }, "The recap could not be written this time."), again());
    } else {
      body.replaceChildren(
        h("h3", { class: "recap__label" }, "What we covered"),
        h("p", { class: "recap__covered" }, current.covered),
        current.hard ? h("h3", { class: "recap__label" }, "What was hard") : null,
        current.hard ? h("p", { class: "recap__hard" }, current.hard) : null,
        h("h3", { class: "recap__label" }, "Review questions"),
        h("ol", { class: "recap__questions" }, current.questions.map((q) => h("li", {}, q))),
        current.notice ? h("p", { class: "recap__notice muted" }, current.notice) : null,
        again(),
      );
    }
    if (polling) announce("Your lesson recap is ready.");
  }

  async function poll() {
    if (!panel.isConnected) return;
    try {
      const lesson = await get(`/api/lessons/${lessonId}`);
      draw(lesson.recap, { polling: true });
    } catch {
      timer = window.setTimeout(poll, POLL_MS * 2);
    }
  }

  draw(recap, { polling: waitForIt });
  return panel;
}

/** "What your tutor remembers about you": the learner's facts, grouped by companion, each deletable. */
export function factsPanel(facts) {
  const list = h("ul", { class: "facts__list", role: "list" });
  const empty = h("p", { class: "muted facts__empty" }, "Nothing yet. After a lesson, your tutor notes what helps next time: your level, your interests, what you find tricky.");
  function redraw() {
    empty.hidden = list.children.length > 0;
  }
  for (const fact of facts) {
    const item = h(
      "li",
      { class: "facts__item", dataset: { factId: fact.id } },
      h("span", { class: "facts__text" }, fact.text),
      h("span", { class: "facts__companion muted" }, `with ${fact.companion_name}`),
      h(
        "button",
        {
          type: "button",
          class: "btn btn--ghost btn--sm facts__delete",
          "aria-label": `Forget: ${fact.text}`,
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              await del(`/api/me/facts/${fact.id}`);
              item.remove();
              redraw();
              announce("Forgotten.");
            } catch (err) {
              event.currentTarget.disabled = false;
              announce(err.message, { assertive: true });
            }
          },
        },
        icon("trash", { size: 16 }),
        "Forget",
      ),
    );
    list.append(item);
  }
  redraw();
  return h(
    "section",
    { class: "card stack facts", "aria-labelledby": "facts-title", id: "facts-section" },
    h("h2", { id: "facts-title" }, "What your tutor remembers about you"),
    h("p", { class: "muted small" }, "Your tutor starts each lesson from this list and your last recaps. Delete anything you'd rather it forgot."),
    empty,
    list,
  );
}
