// Joining a class with the teacher's short code, and the classes a learner is in (with a way to leave).

import { del, get, post } from "../api.js";
import { announce, h, plural } from "../dom.js";
import { companionGrid, emptyState, field, formAlert, sectionHeader } from "../components.js";
import { icon } from "../icons.js";

/** What each refusal means to a learner, in words (the server's message is the fallback). */
function joinErrorText(err, code) {
  if (err.code === "join_code_unknown") {
    return `We don't know the code “${code}”. Check it with your teacher: it has 6 letters and numbers.`;
  }
  if (err.code === "join_code_expired") return "That code has expired. Ask your teacher for a new one.";
  if (err.code === "already_in_class") return "You're already in that class.";
  if (err.code === "validation_error") return "Enter the code your teacher gave you.";
  return err.message;
}

export async function joinView(ctx) {
  const { app, query, signal } = ctx;
  const mine = await get("/api/me/classes", { signal }).catch((err) => {
    if (err && err.name === "AbortError") throw err;
    return { classes: [] };
  });

  const codeInput = h("input", {
    type: "text",
    name: "code",
    value: (query.get("code") || "").trim().toUpperCase(),
    required: true,
    maxlength: "16",
    autocomplete: "off",
    autocapitalize: "characters",
    spellcheck: "false",
    class: "join-code-input",
  });
  const slot = h("div", { class: "form-alert-slot", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "form", novalidate: true, "aria-labelledby": "join-title" },
    field({ id: "join-code-input", label: "Class code", hint: "Your teacher shows it on their class page, for example K7Q2MX.", control: codeInput }),
    h("button", { type: "submit", class: "btn btn--primary" }, icon("school", { size: 18 }), "Join class"),
    slot,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = codeInput.value.trim().toUpperCase();
    if (!code) {
      slot.replaceChildren(formAlert("Enter the code your teacher gave you."));
      codeInput.setAttribute("aria-invalid", "true");
      codeInput.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { class: joined } = await post("/api/classes/join", { code });
      app.toast(`You joined ${joined.name}.`);
      await app.refreshMe();
      app.navigate("/join", { force: true });
      announce(`You joined ${joined.name} with ${joined.teacher_name}.`);
    } catch (err) {
      button.disabled = false;
      codeInput.setAttribute("aria-invalid", "true");
      slot.replaceChildren(formAlert(joinErrorText(err, code)));
      codeInput.focus();
    }
  });

  const classes = mine.classes || [];
  const list = classes.length
    ? h(
        "ul",
        { class: "row-list", role: "list", id: "my-classes" },
        classes.map((c) =>
          h(
            "li",
            { class: "row-item", dataset: { classId: c.id } },
            h("span", { class: "feature__icon", "aria-hidden": "true" }, icon("school", { size: 20 })),
            h(
              "div",
              { class: "row-item__body" },
              h("span", { class: "row-item__title" }, c.name),
              h("span", { class: "row-item__sub" }, `${c.teacher_name} · ${plural((c.companions || []).length, "companion")}`),
            ),
            h(
              "button",
              {
                type: "button",
                class: "btn btn--ghost btn--sm",
                "aria-label": `Leave ${c.name}`,
                onclick: async (event) => {
                  if (!window.confirm(`Leave ${c.name}? Your lessons stay yours; you can join again with a code.`)) return;
                  event.currentTarget.disabled = true;
                  try {
                    await del(`/api/me/classes/${c.id}`);
                    app.toast(`You left ${c.name}.`);
                    await app.refreshMe();
                    app.navigate("/join", { force: true });
                  } catch (err) {
                    event.currentTarget.disabled = false;
                    app.toast(err.message, { tone: "error" });
                  }
                },
              },
              "Leave",
            ),
          ),
        ),
      )
    : emptyState({ iconName: "school", title: "You're not in a class yet", text: "Enter the code your teacher gave you above." });

  const el = h(
    "div",
    { class: "stack-lg console join-page" },
    h("div", { class: "page-head" }, h("div", {}, h("p", { class: "eyebrow" }, "Classes"), h("h1", { id: "join-title" }, "Join a class"))),
    h(
      "div",
      { class: "console-split" },
      h(
        "section",
        { class: "card stack", "aria-labelledby": "join-with-code-title" },
        h("h2", { id: "join-with-code-title" }, "Join with a code"),
        h("p", {}, "Your class's companions show first in your library once you join. Your teacher can see your lessons and read their transcripts."),
        form,
      ),
      h(
        "section",
        { class: "card stack", "aria-labelledby": "my-classes-title" },
        sectionHeader("Your classes", { id: "my-classes-title" }),
        list,
        classes.length ? h("a", { class: "link-arrow", href: "/companions" }, "Your class companions", icon("arrowRight", { size: 16 })) : null,
      ),
    ),
  );
  return { title: "Join a class", el };
}

/**
 * The library's first block for a learner: their classes' companions (shown before everything else), or a
 * pointer to joining a class when they are in none. Null for teachers and administrators.
 */
export async function classCompanionsSection(app, signal) {
  if (!app.me || (app.me.role && app.me.role !== "learner")) return null;
  let classes;
  try {
    ({ classes } = await get("/api/me/classes", { signal }));
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    return null;
  }
  if (!classes.length) {
    return h(
      "p",
      { class: "class-hint" },
      icon("school", { size: 18 }),
      "Have a code from your teacher? ",
      h("a", { href: "/join" }, "Join your class"),
    );
  }
  const seen = new Set();
  const companions = [];
  for (const c of classes) {
    for (const companion of c.companions || []) {
      if (seen.has(companion.id)) continue;
      seen.add(companion.id);
      companions.push(companion);
    }
  }
  const names = classes.map((c) => c.name).join(", ");
  return h(
    "section",
    { class: "stack class-companions", "aria-labelledby": "class-companions-title" },
    sectionHeader("From your class", {
      id: "class-companions-title",
      action: h("a", { class: "link-arrow", href: "/join" }, classes.length > 1 ? "Your classes" : "Your class", icon("arrowRight", { size: 16 })),
    }),
    h("p", { class: "muted" }, `Chosen for ${names} by your teacher.`),
    companions.length
      ? companionGrid(companions, app, { idSuffix: "-class" })
      : h("p", { class: "muted" }, "Your teacher hasn't assigned any companions yet."),
  );
}
