// A finished (or running) lesson's stored transcript, opened from "my lessons".

import { get } from "../api.js";
import { formatDateTime, formatLength, h } from "../dom.js";
import { emptyState, endReasonInfo, subjectBadge } from "../components.js";
import { icon, subjectLook, subjectTile } from "../icons.js";
import { recapPanel } from "../recap.js";
import { sourcesNote } from "./materials.js";

export async function lessonView(ctx) {
  const { params, signal } = ctx;
  const lesson = await get(`/api/lessons/${params.id}`, { signal });
  const companion = lesson.companion || { name: "A deleted companion", subject: "", topic: "" };
  const ended = Boolean(lesson.ended_at);
  const info = endReasonInfo(lesson.end_reason, { duration: companion.duration });
  const sorted = [...(lesson.transcript || [])].sort((a, b) => a.order - b.order);
  // One bubble per turn, as in the live view: the tutor's sentences are stored one by one.
  const lines = [];
  for (const line of sorted) {
    const last = lines[lines.length - 1];
    if (last && last.role === line.role) {
      last.text = `${last.text} ${line.text}`;
      last.sources.push(...(line.sources || []));
    } else lines.push({ role: line.role, text: line.text, sources: [...(line.sources || [])] });
  }

  const transcript = lines.length
    ? h(
        "ol",
        { class: "transcript transcript--stored", "aria-labelledby": "stored-transcript-title" },
        lines.map((line) =>
          h(
            "li",
            { class: `bubble bubble--${line.role === "user" ? "user" : "assistant"}`, dataset: { role: line.role } },
            h("span", { class: "bubble__who" }, line.role === "user" ? "You" : companion.name),
            h("p", { class: "bubble__text" }, line.text),
            line.role === "user" ? null : sourcesNote(line.sources),
          ),
        ),
      )
    : emptyState({
        iconName: "transcript",
        title: "Nothing was said in this lesson",
        text: "The transcript is empty: the lesson ended before anyone spoke.",
      });

  const el = h(
    "div",
    {
      class: "stack-lg lesson-record",
      style: companion.subject
        ? { "--subject": subjectLook(companion.subject).colour, "--subject-accent": subjectLook(companion.subject).accent }
        : {},
    },
    h("a", { class: "link-back", href: "/journey#my-lessons" }, icon("arrowLeft", { size: 16 }), "My journey"),
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
        ),
        h("h1", {}, `Lesson with ${companion.name}`),
        companion.topic ? h("p", { class: "lesson-head__topic" }, companion.topic) : null,
        h(
          "p",
          { class: "lesson-head__meta muted" },
          h("span", {}, icon("clock", { size: 16 }), formatDateTime(lesson.started_at)),
          h("span", {}, ended ? `Length ${formatLength(lesson.length_seconds)}` : "Not finished"),
        ),
      ),
      // An archived companion left the library: its page is gone, so there is no lesson to start there.
      companion.id && !companion.archived
        ? h(
            "div",
            { class: "lesson-head__actions" },
            h("a", { class: "btn btn--primary", href: `/companions/${companion.id}` }, icon("phone", { size: 18 }), "Start another lesson"),
          )
        : null,
    ),
    ended && lesson.end_reason
      ? h("p", { class: "lesson-record__outcome" }, icon("info", { size: 18 }), `${info.title}. ${info.text}`)
      : null,
    ended && lesson.recap ? recapPanel(lesson.id, lesson.recap) : null,
    h(
      "section",
      { class: "card transcript-panel", "aria-labelledby": "stored-transcript-title" },
      h("div", { class: "section-header" }, h("h2", { id: "stored-transcript-title" }, "Transcript")),
      transcript,
    ),
  );
  return { title: `Lesson with ${companion.name}`, el };
}
