// The companion builder (and editor): inline validation from the API, and a clear stop when the plan is full.

import { ApiError, get, patch, post } from "../api.js";
import { announce, capitalize, h } from "../dom.js";
import { choiceGroup, field, formAlert, showFieldErrors } from "../components.js";
import { icon, subjectLook } from "../icons.js";
import { companionVoice, installedVoices, voiceDetails } from "../voices.js";
import { demoModelNotice } from "./companion.js";

const DURATIONS = [5, 10, 15, 20, 30, 45, 60];

/**
 * The voice picker: each voice this server has installed, by name, with its language (and the speaker's gender
 * where the server knows it) and a Preview button that plays a short sentence in it. One <audio> element plays
 * the previews, so starting one stops the other.
 */
function voicePicker(config, chosen, missing) {
  const voices = installedVoices(config);
  const errorId = "voice-error";
  const audio = h("audio", { class: "voice-picker__audio", preload: "none" });
  let playing = null;

  const stopped = () => {
    if (playing) {
      playing.setAttribute("aria-pressed", "false");
      playing.classList.remove("is-playing");
    }
    playing = null;
  };
  const stop = () => {
    audio.pause();
    stopped();
  };
  audio.addEventListener("ended", stopped);
  audio.addEventListener("error", () => {
    if (!playing) return;
    const name = playing.dataset.voiceName;
    stopped();
    announce(`The preview of ${name} could not be played.`, { assertive: true });
  });

  async function preview(button, voice) {
    const again = playing === button;
    stop();
    if (again) return;
    playing = button;
    button.setAttribute("aria-pressed", "true");
    button.classList.add("is-playing");
    if (audio.getAttribute("src") !== voice.preview_url) audio.src = voice.preview_url;
    audio.currentTime = 0;
    try {
      await audio.play();
    } catch (err) {
      // Another preview replaced this one before it started: nothing went wrong.
      if (err && err.name === "AbortError") return;
      if (playing === button) {
        stopped();
        announce(`The preview of ${voice.name} could not be played.`, { assertive: true });
      }
    }
  }

  const options = voices.map((voice, index) => {
    const inputId = `voice-option-${index}`;
    const aboutId = `${inputId}-about`;
    const details = voiceDetails(voice);
    return h(
      "li",
      { class: "voice-option", dataset: { voiceId: voice.id } },
      h(
        "label",
        { class: "voice-option__pick", for: inputId },
        h("input", {
          type: "radio",
          id: inputId,
          name: "voice",
          value: voice.id,
          checked: voice.id === chosen,
          required: true,
          "aria-describedby": details ? aboutId : null,
        }),
        h("span", { class: "voice-option__name" }, voice.name),
      ),
      details ? h("span", { class: "voice-option__about", id: aboutId }, details) : null,
      voice.preview_url
        ? h(
            "button",
            {
              type: "button",
              class: "btn btn--outline btn--sm voice-option__preview",
              "aria-pressed": "false",
              dataset: { voiceName: voice.name },
              onClick: (event) => preview(event.currentTarget, voice),
            },
            "Preview",
            h("span", { class: "visually-hidden" }, ` ${voice.name}`),
          )
        : null,
    );
  });

  const el = h(
    "fieldset",
    { class: "field voice-picker", dataset: { field: "voice" }, "aria-describedby": errorId },
    h("legend", { class: "field__label" }, "Voice"),
    missing
      ? h(
          "p",
          { class: "field__hint" },
          `This companion's voice (${missing}) is no longer installed, so its lessons use ${
            voices.length ? voices[0].name : "the default voice"
          }. Choose one of the installed voices.`,
        )
      : null,
    voices.length
      ? h("ul", { class: "voice-picker__list", role: "list" }, options)
      : h("p", { class: "field__hint" }, "This server has no voices installed."),
    audio,
    h("p", { class: "field__error", id: errorId, hidden: true }),
  );
  return { el, stop };
}

function limitReached(app, message) {
  const usage = app.me && app.me.usage && app.me.usage.companions;
  return h(
    "section",
    { class: "panel panel--center limit", "aria-labelledby": "limit-title" },
    h("span", { class: "limit__icon" }, icon("plans", { size: 32 })),
    h("h1", { id: "limit-title" }, "You've reached your companion limit"),
    h(
      "p",
      {},
      message ||
        `Your ${app.me.plan} plan allows ${usage ? usage.limit : "no more"} companions, and you've built them all.`,
    ),
    h("p", { class: "muted" }, "Upgrade your plan to build more, or keep learning with the companions you have."),
    h(
      "div",
      { class: "panel__actions" },
      h("a", { class: "btn btn--primary", href: "/plans" }, "See plans"),
      h("a", { class: "btn btn--outline", href: "/journey" }, "My companions"),
    ),
  );
}

export async function builderView(ctx) {
  const { app, params, signal } = ctx;
  const editing = params.id !== undefined;
  let companion = null;
  if (editing) {
    companion = await get(`/api/companions/${params.id}`, { signal });
    if (!companion.is_mine) {
      throw new ApiError(403, "not_author", "Only the companion's author can edit it.");
    }
  } else {
    await app.refreshMe();
    const usage = app.me && app.me.usage && app.me.usage.companions;
    if (usage && usage.limit !== null && usage.used >= usage.limit) {
      return { title: "Companion limit reached", el: limitReached(app) };
    }
  }
  const values = companion || {
    name: "",
    subject: "",
    topic: "",
    voice: app.config.default_voice || "",
    style: "casual",
    teaching: "explain",
    duration: 15,
  };
  // A companion made before voices had names ("male"/"female") shows the voice it actually speaks with.
  const speaking = companionVoice(app.config, values);
  const voices = voicePicker(app.config, speaking ? speaking.id : null, speaking || !editing ? null : values.voice);

  const preview = h("span", { class: "builder__preview-tile" });
  const subjectSelect = h(
    "select",
    { name: "subject", required: true },
    h("option", { value: "", disabled: true, selected: !values.subject }, "Choose a subject"),
    app.config.subjects.map((s) => h("option", { value: s, selected: s === values.subject }, capitalize(s))),
  );
  const drawPreview = () => {
    const look = subjectLook(subjectSelect.value || "none");
    preview.style.setProperty("--subject", look.colour);
    preview.style.setProperty("--subject-accent", look.accent);
    preview.replaceChildren(icon(look.icon, { size: 40 }));
  };
  subjectSelect.addEventListener("change", drawPreview);
  drawPreview();

  const durationSelect = h(
    "select",
    { name: "duration", required: true },
    [...new Set([...DURATIONS, values.duration])]
      .sort((a, b) => a - b)
      .map((d) => h("option", { value: d, selected: d === values.duration }, `${d} minutes`)),
  );

  const alertSlot = h("div", { class: "form-alert-slot" });
  const submit = h(
    "button",
    { type: "submit", class: "btn btn--primary btn--lg btn--block" },
    editing ? "Save changes" : "Build your companion",
  );
  const form = h(
    "form",
    { class: "form builder__form", novalidate: true },
    alertSlot,
    field({
      id: "companion-name",
      label: "Companion name",
      hint: "What your tutor is called, e.g. “Neura the Brainy Explorer”.",
      control: h("input", { type: "text", name: "name", value: values.name, required: true, maxlength: 100, autocomplete: "off" }),
    }),
    field({ id: "companion-subject", label: "Subject", control: subjectSelect }),
    field({
      id: "companion-topic",
      label: "What should the companion teach?",
      hint: "A topic in a few words, e.g. “Derivatives and integrals”.",
      control: h("textarea", { name: "topic", rows: 3, required: true, maxlength: 200 }, values.topic),
    }),
    voices.el,
    h(
      "div",
      { class: "form__row" },
      choiceGroup({
        name: "style",
        legend: "Style",
        value: values.style,
        options: [
          { value: "casual", label: "Casual" },
          { value: "formal", label: "Formal" },
        ],
      }),
      field({ id: "companion-duration", label: "Lesson length", control: durationSelect }),
    ),
    choiceGroup({
      name: "teaching",
      legend: "How it teaches",
      value: values.teaching || "explain",
      options: [
        { value: "explain", label: "Explains" },
        { value: "socratic", label: "Guides with questions" },
        { value: "quiz", label: "Quizzes past lessons" },
      ],
    }),
    submit,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    // Numbers go as numbers; anything empty is sent as-is so the server explains what is missing.
    if (data.duration !== undefined && data.duration !== "") data.duration = Number(data.duration);
    for (const key of ["name", "subject", "topic", "voice", "style", "teaching"]) if (data[key] === undefined) data[key] = "";
    alertSlot.replaceChildren();
    showFieldErrors(form, {});
    submit.disabled = true;
    submit.classList.add("is-loading");
    try {
      const saved = editing
        ? await patch(`/api/companions/${companion.id}`, data)
        : await post("/api/companions", data);
      await app.refreshMe();
      app.toast(editing ? "Changes saved." : `${saved.name} is ready. Start your first lesson!`);
      app.navigate(`/companions/${saved.id}`, { force: true });
    } catch (err) {
      if (err instanceof ApiError && err.code === "companion_limit_reached") {
        await app.refreshMe();
        el.replaceWith(limitReached(app, err.message));
        document.getElementById("limit-title").setAttribute("tabindex", "-1");
        document.getElementById("limit-title").focus();
        announce("You've reached your companion limit", { assertive: true });
        return;
      }
      const fields = err instanceof ApiError ? err.fields : {};
      const first = showFieldErrors(form, fields);
      const count = Object.keys(fields).length;
      alertSlot.replaceChildren(
        formAlert(
          count
            ? `Please fix ${count === 1 ? "the highlighted field" : `the ${count} highlighted fields`} and try again.`
            : err.message || "Could not save the companion.",
        ),
      );
      announce(count ? "Some fields need attention" : err.message, { assertive: true });
      if (first) first.focus();
    } finally {
      submit.disabled = false;
      submit.classList.remove("is-loading");
    }
  });

  const el = h(
    "div",
    { class: "builder" },
    h(
      "div",
      { class: "builder__intro" },
      h("a", { class: "link-back", href: editing ? `/companions/${companion.id}` : "/companions" }, icon("arrowLeft", { size: 16 }), "Back"),
      h("p", { class: "eyebrow" }, editing ? "Edit companion" : "Companion builder"),
      h("h1", {}, editing ? `Edit ${companion.name}` : "Build a new companion"),
      h("p", { class: "muted" }, "Your companion teaches one topic by voice. You can change it later."),
      demoModelNotice(app.config),
      h("div", { class: "builder__preview", "aria-hidden": "true" }, preview),
    ),
    h("div", { class: "card builder__card" }, form),
  );
  // A preview must not go on playing once the learner has left the builder.
  return { title: editing ? "Edit companion" : "Build a companion", el, cleanup: voices.stop };
}
