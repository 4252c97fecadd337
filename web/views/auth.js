// Sign in and sign up screens (plus the school SSO button when the server has it configured).

import { ApiError, post } from "../api.js";
import { announce, h } from "../dom.js";
import { field, formAlert, showFieldErrors } from "../components.js";
import { icon } from "../icons.js";

/** Only same-site paths are allowed as the place to return to after signing in. */
export function safeNext(next) {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/api/")) return "/";
  if (next.startsWith("/signin") || next.startsWith("/signup")) return "/";
  return next;
}

function ssoBlock(config, next) {
  const sso = config.sso || {};
  if (!sso.enabled) return null;
  const url = `${sso.login_url || "/api/auth/sso/login"}?next=${encodeURIComponent(next)}`;
  return h(
    "div",
    { class: "auth__sso" },
    h("a", { class: "btn btn--outline btn--block", href: url, dataset: { external: "" } }, icon("school"), sso.label || "Sign in with your school"),
    h("p", { class: "divider" }, h("span", {}, "or use your email")),
  );
}

function authShell(title, intro, body) {
  return h(
    "section",
    { class: "auth" },
    h(
      "div",
      { class: "auth__aside", "aria-hidden": "true" },
      h("span", { class: "auth__orb" }, icon("logo", { size: 56 })),
      h("p", { class: "auth__quote" }, "Talk it through. Learn it for real."),
      h("p", { class: "auth__sub" }, "Build a companion for any topic and have a spoken lesson with it, right here."),
    ),
    h("div", { class: "auth__card card" }, h("h1", {}, title), h("p", { class: "muted" }, intro), body),
  );
}

async function submitForm(form, alertSlot, request) {
  const button = form.querySelector("button[type=submit]");
  alertSlot.replaceChildren();
  showFieldErrors(form, {});
  button.disabled = true;
  button.classList.add("is-loading");
  try {
    return await request();
  } catch (err) {
    const apiErr = err instanceof ApiError ? err : new ApiError(0, "error", String(err));
    const first = showFieldErrors(form, apiErr.fields);
    if (!first || !Object.keys(apiErr.fields).length) alertSlot.replaceChildren(formAlert(apiErr.message));
    announce(apiErr.message, { assertive: true });
    (first || form.querySelector("input")).focus();
    return null;
  } finally {
    button.disabled = false;
    button.classList.remove("is-loading");
  }
}

export async function signInView(ctx) {
  const { app, query } = ctx;
  const next = safeNext(query.get("next"));
  const alertSlot = h("div", { class: "form-alert-slot" });
  const form = h(
    "form",
    { class: "form", novalidate: true },
    alertSlot,
    field({
      id: "signin-email",
      label: "Email",
      control: h("input", { type: "email", name: "email", autocomplete: "email", required: true }),
    }),
    field({
      id: "signin-password",
      label: "Password",
      control: h("input", { type: "password", name: "password", autocomplete: "current-password", required: true }),
    }),
    h("button", { type: "submit", class: "btn btn--primary btn--block" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const user = await submitForm(form, alertSlot, () => post("/api/auth/login", data));
    if (!user) return;
    await app.refreshMe();
    app.toast(`Welcome back, ${user.name}!`);
    app.navigate(next, { replace: true, force: true });
  });
  const body = h(
    "div",
    {},
    ssoBlock(app.config, next),
    form,
    app.config.registration
      ? h("p", { class: "auth__switch" }, "New here? ", h("a", { href: withNext("/signup", next) }, "Create an account"))
      : null,
  );
  return { title: "Sign in", el: authShell("Welcome back", "Sign in to continue learning.", body) };
}

export async function signUpView(ctx) {
  const { app, query } = ctx;
  const next = safeNext(query.get("next"));
  if (!app.config.registration) {
    const body = h(
      "div",
      {},
      formAlert("Your school creates accounts for you, so sign-up is turned off here.", "info"),
      ssoBlock(app.config, next),
      h("a", { class: "btn btn--primary btn--block", href: withNext("/signin", next) }, "Go to sign in"),
    );
    return { title: "Sign up", el: authShell("Create your account", "", body) };
  }
  const alertSlot = h("div", { class: "form-alert-slot" });
  const form = h(
    "form",
    { class: "form", novalidate: true },
    alertSlot,
    field({
      id: "signup-name",
      label: "Your name",
      control: h("input", { type: "text", name: "name", autocomplete: "name", required: true, maxlength: 100 }),
    }),
    field({
      id: "signup-email",
      label: "Email",
      control: h("input", { type: "email", name: "email", autocomplete: "email", required: true }),
    }),
    field({
      id: "signup-password",
      label: "Password",
      hint: "Use a long password that you don't use anywhere else.",
      control: h("input", { type: "password", name: "password", autocomplete: "new-password", required: true }),
    }),
    h("button", { type: "submit", class: "btn btn--primary btn--block" }, "Create account"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const user = await submitForm(form, alertSlot, () => post("/api/auth/register", data));
    if (!user) return;
    await app.refreshMe();
    app.toast(`Welcome, ${user.name}! Your account is ready.`);
    app.navigate(next === "/" ? "/" : next, { replace: true, force: true });
  });
  const body = h(
    "div",
    {},
    ssoBlock(app.config, next),
    form,
    h("p", { class: "auth__switch" }, "Already have an account? ", h("a", { href: withNext("/signin", next) }, "Sign in")),
  );
  return { title: "Sign up", el: authShell("Create your account", "It takes a minute. Then build your first companion.", body) };
}

function withNext(path, next) {
  return next && next !== "/" ? `${path}?next=${encodeURIComponent(next)}` : path;
}
