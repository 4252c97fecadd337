// The lesson page: a companion's header, start/end, mute, the speaking animation, live transcript and countdown.
//
// Voice goes through the Vapi-shaped client only (our /vapi.js, or the real @vapi-ai/web SDK in hosted mode),
// so this file is the same in both modes.

import { ApiError, del, get, post } from "../api.js";
import { announce, capitalize, formatClock, h, initials, plural } from "../dom.js";
import { bookmarkButton, endReasonInfo, subjectBadge } from "../components.js";
import { icon, subjectLook, subjectTile } from "../icons.js";
import { recapPanel } from "../recap.js";
import { voiceName } from "../voices.js";
import { materialsSection, sourcesNote } from "./materials.js";

/** Load the voice client the server's config names: ours, or the hosted SDK (the one import that differs). */
async function createVoiceClient(config, call) {
  const backend = call.backend || config.voice.backend;
  const url = backend === "vapi" ? config.voice.sdk_url : "/vapi.js";
  if (!url) throw new Error("Hosted voice is on, but no Vapi SDK address is configured on the server.");
  const mod = await import(url);
  // Bundlers wrap a CommonJS default export once more; accept both shapes.
  const Vapi = (mod.default && mod.default.default) || mod.default || mod.Vapi;
  const publicKey = call.public_key || config.voice.public_key || "";
  if (backend !== "vapi") return new Vapi(publicKey, location.origin);
  // avoidEval: Daily loads its call machine with a script tag rather than through Function(), so the page's
  // Content-Security-Policy needs no 'unsafe-eval' in hosted mode.
  return new Vapi(publicKey, undefined, { avoidEval: true });
}

// Used when a server says it runs the demonstration model but sends no words of its own (an older server).
const DEMO_NOTICE_FALLBACK =
  "This tutor runs on a small demonstration model: it answers quickly but is often wrong. Check what it says.";

/**
 * The learner's warning that a small demonstration model writes the tutor's answers, or null when it does not.
 * Servers from before the model notice send no `voice.model`, so its absence means "nothing to say".
 */
export function demoModelNotice(config) {
  const model = config && config.voice && config.voice.model;
  if (!model || model.demo !== true) return null;
  const text = typeof model.notice === "string" && model.notice.trim() ? model.notice.trim() : DEMO_NOTICE_FALLBACK;
  return h("div", { class: "alert alert--info demo-notice", role: "note" }, icon("info", { size: 20 }), h("div", {}, text));
}

const VOICE_EVENTS = ["call-start", "call-end", "speech-start", "speech-end", "volume-level", "message", "error"];

/** Detach the page's handlers; the real SDK's removeAllListeners() without an event name clears nothing. */
function detach(client) {
  for (const event of VOICE_EVENTS) client.removeAllListeners(event);
}

function errorText(err) {
  // The real SDK nests its reason, e.g. {type: "start-method-error", error: {message: {message: "..."}}}.
  for (let value = err, depth = 0; value && depth < 4; depth += 1) {
    if (typeof value === "string") return value;
    const next = value.message ?? value.errorMsg ?? value.error;
    if (typeof next === "string" && next) return next;
    value = next;
  }
  return "The tutor ran into a problem.";
}

export async function companionView(ctx) {
  const { app, params, signal } = ctx;
  const companion = await get(`/api/companions/${params.id}`, { signal });
  // The author's materials (upload, downloads, delete), or for others their names; null when there is nothing.
  const materials = await materialsSection(companion, app, { signal });
  const look = subjectLook(companion.subject);
  const totalSeconds = companion.duration * 60;

  let phase = "idle"; // idle | connecting | live | ending | ended
  let client = null;
  let lessonId = null;
  let hosted = false; // the call runs on Vapi, which records it through webhooks
  let endedReason = null;
  let userEnded = false;
  let wentLive = false; // the lesson connected, so it gets a recap when it ends (local lessons: hosted ones have no model of ours)
  let clockTimer = 0;
  let endsAt = 0;
  let level = 0;
  let lastBubble = null;
  let disposed = false;

  // -- the stage ------------------------------------------------------------------------------------------
  const tutorStatus = h("p", { class: "stage__status", id: "tutor-status" }, "Ready when you are");
  const tutorAvatar = h(
    "div",
    { class: "voice-orb", style: { "--subject": look.colour, "--subject-accent": look.accent } },
    h("span", { class: "voice-orb__ring voice-orb__ring--outer" }),
    h("span", { class: "voice-orb__ring" }),
    h("span", { class: "voice-orb__core" }, icon(look.icon, { size: 56 })),
    h(
      "span",
      { class: "voice-orb__bars", "aria-hidden": "true" },
      h("i", {}),
      h("i", {}),
      h("i", {}),
      h("i", {}),
      h("i", {}),
    ),
  );
  // The timer itself stays quiet (a screen reader would read every second); the warning below speaks once.
  const clock = h(
    "span",
    { class: "countdown__value", role: "timer", "aria-live": "off", "aria-labelledby": "countdown-label", id: "countdown" },
    formatClock(totalSeconds),
  );
  const countdown = h(
    "div",
    { class: "countdown" },
    icon("clock", { size: 18 }),
    h("span", { id: "countdown-label", class: "visually-hidden" }, "Time left"),
    clock,
  );
  // The one-minute warning in words, not only the clock's colour; a live region, so it is read out as it comes.
  const timeWarning = h("p", { class: "countdown__warning", role: "status", id: "time-warning" });
  const muteButton = h(
    "button",
    { type: "button", class: "btn btn--round btn--outline", "aria-pressed": "false", disabled: true, id: "mute-button" },
  );
  const micState = h("p", { class: "stage__status", id: "mic-state" }, "Microphone ready");
  const startButton = h(
    "button",
    { type: "button", class: "btn btn--primary btn--lg btn--call", id: "start-lesson", "aria-describedby": "lesson-privacy" },
    icon("phone", { size: 20 }),
    h("span", {}, "Start lesson"),
  );
  const endButton = h(
    "button",
    { type: "button", class: "btn btn--danger btn--lg btn--call", id: "end-lesson", hidden: true },
    icon("phoneOff", { size: 20 }),
    h("span", {}, "End lesson"),
  );
  const messageSlot = h("div", { class: "lesson-message", "aria-live": "polite" });
  const errorSlot = h("div", { class: "lesson-error" });
  // The server's warning before it ends a silent lesson ({type: "silence-warning", secondsLeft}); gone once the
  // learner speaks. A muted learner is silent too, so they see it as well, with how to carry on.
  const silenceText = h("div", {});
  const silenceNotice = h(
    "div",
    { class: "alert alert--warn silence-notice", role: "alert", id: "silence-notice", hidden: true },
    icon("info", { size: 20 }),
    silenceText,
  );
  let silenceEndsAt = 0;
  let silenceTimer = 0;

  function drawSilenceNotice() {
    const left = Math.max(0, Math.ceil((silenceEndsAt - Date.now()) / 1000));
    const muted = client ? client.isMuted() : false;
    silenceText.textContent =
      `Are you still there? The lesson ends in ${plural(left, "second")} unless you speak.` +
      (muted ? " Your microphone is off: unmute it to carry on." : "");
  }

  function showSilenceNotice(secondsLeft) {
    silenceEndsAt = Date.now() + Math.max(0, Number(secondsLeft) || 0) * 1000;
    drawSilenceNotice();
    silenceNotice.hidden = false;
    window.clearInterval(silenceTimer);
    silenceTimer = window.setInterval(drawSilenceNotice, 250);
  }

  function hideSilenceNotice() {
    window.clearInterval(silenceTimer);
    silenceTimer = 0;
    silenceNotice.hidden = true;
  }

  // The log is a wrapper: role="log" on the <ol> itself would take away its list role and orphan its items.
  // It is what scrolls, so it takes keyboard focus (arrow keys scroll it) and carries the transcript's name.
  const transcriptList = h("ol", { class: "transcript", id: "live-transcript" });
  const transcriptLog = h(
    "div",
    {
      class: "transcript-log",
      role: "log",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-labelledby": "transcript-title",
      tabindex: "0",
    },
    transcriptList,
  );
  const liveBadge = h("span", { class: "live-dot", hidden: true }, "Live");
  // Said before every lesson, where the learner starts it: who else can read what is said in it.
  const privacyNotice = h(
    "p",
    { class: "lesson-privacy", id: "lesson-privacy" },
    icon("info", { size: 18 }),
    h(
      "span",
      {},
      "Your lessons are saved. Your teacher and your school's administrators can read their transcripts, to keep learners safe.",
    ),
  );
  const transcriptEmpty = h(
    "p",
    { class: "transcript-empty" },
    "Press “Start lesson” and your tutor will say hello. What you both say appears here.",
  );

  function drawMute() {
    const muted = client ? client.isMuted() : false;
    muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    muteButton.replaceChildren(
      icon(muted ? "micOff" : "mic", { size: 22 }),
      h("span", {}, muted ? "Unmute" : "Mute"),
    );
    muteButton.setAttribute("aria-label", muted ? "Unmute microphone" : "Mute microphone");
    micState.textContent = phase === "live" || phase === "connecting" ? (muted ? "Microphone off" : "Microphone on") : "Microphone ready";
    learner.classList.toggle("is-muted", muted);
  }

  const learner = h(
    "div",
    { class: "stage__person" },
    h("span", { class: "avatar avatar--lg", "aria-hidden": "true" }, initials(app.me.name)),
    h("p", { class: "stage__name" }, app.me.name),
    micState,
  );

  function setPhase(next) {
    // A button that is about to be hidden would drop keyboard focus to <body>: it moves to the one shown instead.
    const focused = document.activeElement;
    const hadFocus = focused === startButton || focused === endButton;
    phase = next;
    root.dataset.phase = next;
    const inCall = next === "live" || next === "ending" || next === "connecting";
    // In a lesson the page draws compact, so the transcript is on screen beside (or under) the controls.
    root.classList.toggle("is-in-call", inCall);
    // After a lesson the outcome panel offers "Start another lesson", so the stage shows no second start.
    startButton.hidden = inCall || next === "ended";
    endButton.hidden = !inCall;
    // aria-disabled rather than disabled while ending: a disabled button loses focus.
    if (next === "ending") endButton.setAttribute("aria-disabled", "true");
    else endButton.removeAttribute("aria-disabled");
    muteButton.disabled = next !== "live"; // the real SDK has no call to mute until it is live
    liveBadge.hidden = next !== "live";
    privacyNotice.hidden = inCall;
    if (!inCall) timeWarning.textContent = "";
    const labels = {
      idle: "Ready when you are",
      connecting: "Connecting…",
      live: "Listening",
      ending: "Ending the lesson…",
      ended: "Lesson over",
    };
    tutorStatus.textContent = labels[next];
    if (next === "connecting") {
      endButton.querySelector("span").textContent = "Cancel";
    } else {
      endButton.querySelector("span").textContent = "End lesson";
    }
    drawMute();
    if (hadFocus) {
      const target = [endButton, startButton].find((button) => !button.hidden);
      if (target) target.focus({ preventScroll: true });
    }
  }

  // -- transcript -----------------------------------------------------------------------------------------
  function bubble(role) {
    const who = role === "user" ? "You" : companion.name;
    const finalText = h("span", { class: "bubble__final" });
    const partialText = h("span", { class: "bubble__partial", "aria-hidden": "true" });
    const item = h(
      "li",
      { class: `bubble bubble--${role}`, dataset: { role } },
      h("span", { class: "bubble__who" }, who),
      h("p", { class: "bubble__text" }, finalText, partialText),
    );
    item._final = finalText;
    item._partial = partialText;
    item._role = role;
    return item;
  }

  function onTranscript(message) {
    const role = message.role === "user" ? "user" : "assistant";
    const text = String(message.transcript || "").trim();
    if (!text) return;
    transcriptEmpty.hidden = true;
    // Consecutive words from the same speaker go in one bubble, like a chat.
    if (!lastBubble || lastBubble._role !== role) {
      lastBubble = bubble(role);
      transcriptList.append(lastBubble);
    }
    if (message.transcriptType === "final") {
      const sep = lastBubble._final.textContent ? " " : "";
      lastBubble._final.append(document.createTextNode(sep + text));
      lastBubble._partial.textContent = "";
      lastBubble.classList.remove("is-partial");
      // The teacher's passages this line drew on, named under the tutor's bubble.
      if (Array.isArray(message.sources) && message.sources.length) {
        lastBubble._sources = [...(lastBubble._sources || []), ...message.sources];
        const note = sourcesNote(lastBubble._sources);
        if (lastBubble._sourcesNote) lastBubble._sourcesNote.replaceWith(note);
        else lastBubble.append(note);
        lastBubble._sourcesNote = note;
      }
    } else {
      lastBubble._partial.textContent = (lastBubble._final.textContent ? " " : "") + text;
      lastBubble.classList.add("is-partial");
    }
    // The newest line stays in view; the transcript scrolls, the page and its controls stay put.
    transcriptLog.scrollTop = transcriptLog.scrollHeight;
  }

  // -- countdown ------------------------------------------------------------------------------------------
  function tick() {
    const left = Math.max(0, (endsAt - Date.now()) / 1000);
    clock.textContent = formatClock(left);
    countdown.classList.toggle("countdown--warn", left <= 60);
    if (left <= 60 && !countdown.dataset.warned) {
      countdown.dataset.warned = "1";
      // A lesson shorter than a minute is told what it has, not "one minute".
      timeWarning.textContent = left > 50 ? "One minute left in this lesson." : "Less than a minute left in this lesson.";
    }
  }

  // From the server's answer (/call's seconds_left), which counts from when the lesson started and keeps
  // voice.max_lesson_secs: the page shows the same time left as the server ends the lesson at.
  function startClock() {
    delete countdown.dataset.warned;
    tick();
    clockTimer = window.setInterval(tick, 250);
  }

  function stopClock() {
    window.clearInterval(clockTimer);
    clockTimer = 0;
  }

  // -- messages -------------------------------------------------------------------------------------------
  function showError(text) {
    errorSlot.replaceChildren(
      h("div", { class: "alert alert--error", role: "alert" }, icon("alert", { size: 20 }), h("div", {}, text)),
    );
  }

  // Nothing is wrong with the learner's side and nothing was counted, so this reads as a notice, not an error.
  function showUnavailable(text) {
    errorSlot.replaceChildren(
      h(
        "div",
        { class: "alert alert--warn lesson-unavailable", role: "status" },
        icon("info", { size: 20 }),
        h("div", {}, text),
      ),
    );
    announce(text);
  }

  function showEnd(reason, { detail = "" } = {}) {
    const info = endReasonInfo(reason, { duration: companion.duration });
    const limit = reason === "lesson_limit_reached";
    const actions = h("div", { class: "lesson-end__actions" });
    if (limit) {
      actions.append(h("a", { class: "btn btn--primary", href: "/plans" }, "See plans"));
    } else {
      if (lessonId !== null) {
        actions.append(h("a", { class: "btn btn--outline", href: `/lessons/${lessonId}` }, icon("transcript"), "Read the transcript"));
      }
      actions.append(
        h("button", { type: "button", class: "btn btn--primary", onclick: () => startLesson() }, icon("phone"), "Start another lesson"),
      );
    }
    messageSlot.replaceChildren(
      h(
        "section",
        { class: `lesson-end lesson-end--${info.tone}`, "aria-labelledby": "lesson-end-title", dataset: { reason: reason || "" } },
        h("span", { class: "lesson-end__icon" }, icon(info.tone === "error" ? "alert" : info.tone === "warn" ? "info" : "check", { size: 24 })),
        h(
          "div",
          { class: "lesson-end__body" },
          h("h2", { id: "lesson-end-title", tabindex: "-1" }, info.title),
          h("p", {}, detail && limit ? detail : info.text),
          detail && !limit && info.tone === "error" ? h("p", { class: "muted small" }, detail) : null,
          actions,
        ),
      ),
      // Written by the tutor from the transcript once the lesson has ended: shown when ready.
      wentLive && !hosted && !limit && lessonId !== null ? recapPanel(lessonId, null, { waitForIt: true }) : null,
    );
    announce(`${info.title}. ${limit && detail ? detail : info.text}`, { assertive: info.tone !== "info" });
    // Keyboard users land on the outcome rather than on a button that just vanished.
    const title = document.getElementById("lesson-end-title");
    if (title) title.focus({ preventScroll: false });
  }

  // -- the call -------------------------------------------------------------------------------------------
  let lastError = "";

  function wire(voice) {
    voice.on("call-start", () => {
      if (disposed) return;
      wentLive = true;
      setPhase("live");
      startClock();
      announce("Lesson started. Your tutor will say hello.");
    });
    voice.on("speech-start", () => {
      root.classList.add("is-speaking");
      if (phase === "live") tutorStatus.textContent = "Speaking";
    });
    voice.on("speech-end", () => {
      root.classList.remove("is-speaking");
      if (phase === "live") tutorStatus.textContent = "Listening";
    });
    voice.on("volume-level", (value) => {
      // Light smoothing keeps the orb from flickering between analyser frames.
      level = level * 0.5 + Math.max(0, Math.min(1, Number(value) || 0)) * 0.5;
      tutorAvatar.style.setProperty("--level", level.toFixed(3));
    });
    voice.on("message", (message) => {
      if (!message || typeof message !== "object") return;
      const learnerSpoke =
        message.role === "user" && (message.type === "transcript" || (message.type === "speech-update" && message.status === "started"));
      if (learnerSpoke) hideSilenceNotice();
      if (message.type === "silence-warning") showSilenceNotice(message.secondsLeft);
      else if (message.type === "transcript") onTranscript(message);
      else if (message.type === "status-update" && message.status === "ended" && message.endedReason) {
        endedReason = message.endedReason;
      } else if (message.type === "error") {
        lastError = errorText(message.error);
      }
    });
    voice.on("error", (err) => {
      lastError = errorText(err);
      if (phase === "live" || phase === "connecting") showError(lastError);
    });
    voice.on("call-end", () => onCallEnd());
  }

  async function onCallEnd() {
    if (phase === "ended" || phase === "idle") return;
    setPhase("ended");
    stopClock();
    hideSilenceNotice();
    root.classList.remove("is-speaking");
    tutorAvatar.style.setProperty("--level", "0");
    errorSlot.replaceChildren();
    if (lessonId !== null && hosted) {
      // Hosted calls are recorded by Vapi's webhooks; this marks the lesson ended even if none arrives
      // (the end-of-call report still overwrites the reason and length when it comes).
      try {
        await post(`/api/lessons/${lessonId}/end`);
      } catch {
        // Already ended, or the server is unreachable: nothing more the page can do.
      }
    }
    let reason = endedReason || (userEnded ? "customer-ended-call" : null);
    if (!reason && lessonId !== null) {
      // The stored lesson knows why it ended even when the closing message did not arrive.
      try {
        const stored = await get(`/api/lessons/${lessonId}`);
        reason = stored.end_reason;
      } catch {
        reason = null;
      }
    }
    if (disposed) return;
    showEnd(reason || "customer-disconnected", { detail: lastError });
    app.refreshMe();
  }

  async function startLesson() {
    if (phase === "connecting" || phase === "live") return;
    messageSlot.replaceChildren();
    errorSlot.replaceChildren();
    endedReason = null;
    userEnded = false;
    wentLive = false;
    lastError = "";
    lastBubble = null;
    transcriptList.replaceChildren();
    transcriptEmpty.hidden = false;
    clock.textContent = formatClock(totalSeconds);
    countdown.classList.remove("countdown--warn");
    setPhase("connecting");
    // The compact lesson layout starts at the top of the page; focus goes to the button that now ends (or
    // cancels) the lesson, where the pressed "Start lesson" (or "Start another lesson") was.
    window.scrollTo({ top: 0 });
    endButton.focus({ preventScroll: true });

    // Browsers only offer a microphone on HTTPS or localhost; say so instead of failing obscurely.
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setPhase("idle");
      showError("This browser can't use a microphone on this page. Open the tutor over HTTPS (ask your school's admin).");
      return;
    }
    // Check the microphone before a lesson is counted against the plan.
    try {
      const probe = await navigator.mediaDevices.getUserMedia({ audio: true });
      probe.getTracks().forEach((t) => t.stop());
    } catch (err) {
      setPhase("idle");
      showError(
        err && err.name === "NotFoundError"
          ? "No microphone was found. Plug one in, then start the lesson."
          : "Microphone access is blocked. Allow the microphone for this site (the icon in the address bar), then start again.",
      );
      return;
    }
    if (phase !== "connecting") return; // cancelled meanwhile

    let lesson;
    try {
      lesson = await post(`/api/companions/${companion.id}/lessons`);
    } catch (err) {
      setPhase("idle");
      if (err instanceof ApiError && err.code === "lesson_limit_reached") {
        lessonId = null;
        showEnd("lesson_limit_reached", { detail: err.message });
      } else if (err instanceof ApiError && err.code === "llm_unavailable") {
        // The server refuses before the plan counts the lesson, so the same button simply tries again later.
        lessonId = null;
        showUnavailable(err.message);
      } else {
        showError(errorText(err));
      }
      return;
    }
    lessonId = lesson.id;
    companion.lessons_count += 1;
    lessonsCount.textContent = plural(companion.lessons_count, "lesson");
    app.refreshMe();
    if (phase !== "connecting") return;

    try {
      const call = await get(`/api/lessons/${lesson.id}/call`);
      endsAt = Date.now() + Math.max(0, Number(call.seconds_left ?? totalSeconds)) * 1000;
      clock.textContent = formatClock((endsAt - Date.now()) / 1000);
      hosted = (call.backend || app.config.voice.backend) === "vapi";
      if (client) detach(client);
      client = await createVoiceClient(app.config, call);
      wire(client);
      drawMute();
      if (phase !== "connecting") return;
      const started = await client.start(call.assistant, undefined);
      // The real SDK reports a failed start with an `error` event and resolves null instead of rejecting.
      if (started === null && phase === "connecting") {
        throw new Error(lastError || "The voice service did not start the lesson.");
      }
    } catch (err) {
      if (phase === "ended" || disposed) return;
      setPhase("ended");
      stopClock();
      const text = errorText(err);
      const llm = /language model|llm/i.test(text);
      errorSlot.replaceChildren();
      showEnd(llm ? "llm-unavailable" : "pipeline-error", { detail: text });
    }
  }

  async function endLesson() {
    if (phase === "ending") return;
    if (phase === "connecting" && !client) {
      setPhase("idle");
      return;
    }
    if (!client) return;
    userEnded = true;
    setPhase("ending");
    try {
      await client.stop();
    } finally {
      // The real SDK reports call-end asynchronously; ours already has. Either way, settle the page.
      if (phase === "ending") window.setTimeout(() => phase === "ending" && onCallEnd(), 1500);
    }
  }

  startButton.addEventListener("click", () => startLesson());
  endButton.addEventListener("click", () => endLesson());
  muteButton.addEventListener("click", () => {
    if (!client) return;
    const muted = !client.isMuted();
    client.setMuted(muted);
    drawMute();
    if (!silenceNotice.hidden) drawSilenceNotice();
    announce(muted ? "Microphone off" : "Microphone on");
  });

  const lessonsCount = h("span", {}, plural(companion.lessons_count, "lesson"));

  // -- header ---------------------------------------------------------------------------------------------
  const ownerActions = companion.is_mine
    ? [
        h("a", { class: "btn btn--ghost btn--sm", href: `/companions/${companion.id}/edit` }, icon("edit", { size: 18 }), "Edit"),
        h(
          "button",
          {
            type: "button",
            class: "btn btn--ghost btn--sm btn--danger-text",
            onclick: async () => {
              if (phase === "live" || phase === "connecting") return;
              if (!window.confirm(`Delete ${companion.name}? It leaves the library and takes no new lessons; every lesson already held with it, and its transcript, stays in each learner's history.`)) return;
              try {
                await del(`/api/companions/${companion.id}`);
                await app.refreshMe();
                app.toast(`${companion.name} was deleted.`);
                app.navigate("/journey", { force: true });
              } catch (err) {
                app.toast(errorText(err), { tone: "error" });
              }
            },
          },
          icon("trash", { size: 18 }),
          "Delete",
        ),
      ]
    : [];

  const root = h(
    "div",
    { class: "lesson-page", dataset: { phase }, style: { "--subject": look.colour, "--subject-accent": look.accent } },
    h("a", { class: "link-back", href: "/companions" }, icon("arrowLeft", { size: 16 }), "Library"),
    h(
      "header",
      { class: "lesson-head card" },
      subjectTile(companion.subject, "lg"),
      h(
        "div",
        { class: "lesson-head__body" },
        h("div", { class: "lesson-head__badges" }, subjectBadge(companion.subject), h("span", { class: "badge" }, capitalize(companion.style))),
        h("h1", {}, companion.name),
        h("p", { class: "lesson-head__topic" }, companion.topic),
        h(
          "p",
          { class: "lesson-head__meta muted" },
          h("span", {}, icon("clock", { size: 16 }), `${companion.duration} min lesson`),
          h("span", {}, `Voice: ${voiceName(app.config, companion)}`),
          h("span", {}, `by ${companion.is_mine ? "you" : companion.author.name}`),
          lessonsCount,
        ),
      ),
      h("div", { class: "lesson-head__actions" }, bookmarkButton(companion, app, { withText: true }), ownerActions),
    ),
    demoModelNotice(app.config),
    errorSlot,
    silenceNotice,
    messageSlot,
    h(
      "div",
      { class: "lesson-body" },
      h(
        "section",
        { class: "stage card", "aria-label": "Lesson controls" },
        h(
          "div",
          { class: "stage__tutor" },
          tutorAvatar,
          h("div", { class: "stage__who" }, h("p", { class: "stage__name" }, companion.name), tutorStatus),
        ),
        h(
          "div",
          { class: "stage__side" },
          learner,
          h(
            "div",
            { class: "stage__controls" },
            countdown,
            timeWarning,
            h("div", { class: "stage__buttons" }, muteButton, startButton, endButton),
            privacyNotice,
          ),
        ),
      ),
      h(
        "section",
        { class: "card transcript-panel", "aria-labelledby": "transcript-title" },
        h("div", { class: "section-header" }, h("h2", { id: "transcript-title" }, "Live transcript"), liveBadge),
        transcriptEmpty,
        transcriptLog,
      ),
    ),
    materials,
  );
  setPhase("idle");

  return {
    title: companion.name,
    el: root,
    confirmLeave: () => phase === "live" || phase === "connecting",
    cleanup: () => {
      disposed = true;
      stopClock();
      hideSilenceNotice();
      if (client && (phase === "live" || phase === "connecting" || phase === "ending")) client.stop();
      if (client) detach(client);
    },
  };
}
