// Plans: free / core / pro with their limits, the learner's current plan and what they have used of it.

import { capitalize, h } from "../dom.js";
import { limitText, usageMeter } from "../components.js";
import { icon } from "../icons.js";

const BLURBS = {
  free: "Try the tutor with a few companions.",
  core: "For regular learners: more companions, more lessons.",
  pro: "Everything, without limits.",
};

export async function plansView(ctx) {
  const { app } = ctx;
  if (app.me) await app.refreshMe();
  const me = app.me;
  const period = app.config.lesson_period === "month" ? "a month" : "in total";
  const plans = app.config.plans || [];

  const cards = plans.map((plan) => {
    const current = me && me.plan === plan.id;
    const lessons = plan.lessons === null ? "Unlimited lessons" : `${plan.lessons} lessons ${period}`;
    const companions = plan.companions === null ? "Unlimited companions" : `Up to ${limitText(plan.companions)} companions`;
    return h(
      "li",
      {
        class: `plan card${current ? " plan--current" : ""}${plan.id === "core" ? " plan--featured" : ""}`,
        "aria-labelledby": `plan-${plan.id}`,
        "aria-current": current ? "true" : false,
      },
      current ? h("span", { class: "plan__flag" }, icon("check", { size: 14 }), "Your plan") : null,
      h("h2", { id: `plan-${plan.id}`, class: "plan__name" }, capitalize(plan.id)),
      h("p", { class: "plan__blurb muted" }, BLURBS[plan.id] || ""),
      h(
        "ul",
        { class: "plan__features", role: "list" },
        h("li", {}, icon("check", { size: 18 }), companions),
        h("li", {}, icon("check", { size: 18 }), lessons),
        h("li", {}, icon("check", { size: 18 }), "Transcripts of every lesson"),
        h("li", {}, icon("check", { size: 18 }), "Every subject and voice"),
      ),
      current
        ? h("p", { class: "plan__cta plan__cta--current" }, "You're on this plan")
        : h("p", { class: "plan__cta muted" }, me ? "Ask your school to switch you to this plan." : ""),
    );
  });

  const el = h(
    "div",
    { class: "stack-lg" },
    h(
      "div",
      { class: "page-head page-head--center" },
      h(
        "div",
        {},
        h("p", { class: "eyebrow" }, "Plans"),
        h("h1", {}, "Choose how much you learn"),
        h("p", { class: "muted" }, "Plans are set by your school. Here is what each one includes."),
      ),
    ),
    me
      ? h(
          "section",
          { class: "card usage", "aria-labelledby": "usage-title" },
          h("h2", { id: "usage-title" }, `Your ${capitalize(me.plan)} plan`),
          h(
            "div",
            { class: "usage__meters" },
            usageMeter("Companions built", me.usage.companions),
            usageMeter(app.config.lesson_period === "month" ? "Lessons this month" : "Lessons started", me.usage.lessons),
          ),
        )
      : null,
    h("ul", { class: "plans", role: "list" }, cards),
  );
  return { title: "Plans", el };
}
