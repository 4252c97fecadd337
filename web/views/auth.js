// Sign in and sign up screens (plus the school SSO button when the server has it configured), and the account
// screen: change password, where you are signed in, sign out everywhere.

import { ApiError, get, post } from "../api.js";
import { announce, formatDateTime, h } from "../dom.js";
import { field, formAlert, sectionHeader, showFieldErrors } from "../components.js";
import { icon } from "../icons.js";

/** The password rule, said before the learner types (the server applies the same one, spaces and all). */
export function passwordRule(config) {
  const min = (config && config.password_min_length) || 8;
  return `At least ${min} characters; avoid common passwords such as "password123".`;
}

// The server's own shape check (server/api/auth.py), so the page and the server refuse the same addresses.
const EMAIL_SHAPE = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const EMAIL_HINT = "Enter an e-mail address like name@school.org.";

/**
 * Everything wrong with the sign-up form that the page can tell without the server, every field at once:
 * {field: message}, empty when it may be sent. The server still checks all of it (and common passwords).
 */
function signUpProblems(data, config) {
  const problems = {};
  const min = (config && config.password_min_length) || 8;
  if (!String(data.name || "").trim()) problems.name = "Enter your name.";
  const email = String(data.email || "").trim();
  if (!email) problems.email = "Enter your e-mail address.";
  else if (!EMAIL_SHAPE.test(email)) problems.email = EMAIL_HINT;
  // Counted exactly as typed, spaces included, like the server counts it.
  const password = String(data.password || "");
  if (!password) problems.password = `Choose a password of at least ${min} characters.`;
  else if (password.length < min) problems.password = `Use at least ${min} characters.`;
  return problems;
}

// Which account was created in this tab, so its first screens welcome the learner rather than welcome them back.
// sessionStorage: it lasts through reloads of this tab and is gone in the next one.
const NEW_ACCOUNT_KEY = "tutor.new-account";

function rememberNewAccount(user) {
  try {
    sessionStorage.setItem(NEW_ACCOUNT_KEY, String(user.id));
  } catch {
    // Storage turned off: the learner is simply welcomed back.
  }
}

// Signing in is coming back, even to an account made in this tab.
function forgetNewAccount() {
  try {
    sessionStorage.removeItem(NEW_ACCOUNT_KEY);
  } catch {
    // Nothing was kept.
  }
}

/** True when this learner signed up in this tab: greet them "Welcome", not "Welcome back". */
export function isNewAccount(me) {
  try {
    return Boolean(me) && sessionStorage.getItem(NEW_ACCOUNT_KEY) === String(me.id);
  } catch {
    return false;
  }
}

/** A sign-in lock's wait in words: "Too many tries. Try again in 2 minutes." */
export function tryAgainIn(seconds) {
  if (seconds < 60) return `Too many tries. Try again in ${seconds} second${seconds === 1 ? "" : "s"}.`;
  const minutes = Math.ceil(seconds / 60);
  return `Too many tries. Try again in ${minutes} minute${minutes === 1 ? "" : "s"}.`;
}

/**
 * Send a sign-in or sign-up form; on success greet the learner and go where they were heading.
 * `check` returns the problems the page can see itself ({field: message}); the form is sent only without any.
 * `signedIn(user)` runs once the server has said yes, before the next screen is drawn.
 */
function onAuthSubmit(app, form, alertSlot, url, greeting, next, { check = null, signedIn = null } = {}) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const problems = check ? check(data) : {};
    if (showProblems(form, alertSlot, problems)) return;
    const user = await submitForm(form, alertSlot, () => post(url, data));
    if (!user) return;
    if (signedIn) signedIn(user);
    await app.refreshMe();
    app.toast(greeting(user));
    app.navigate(next, { replace: true, force: true });
  });
}

/**
 * Every field's message at once, a summary above them, and focus on the first field to fix. False (and
 * nothing shown) when none of `fields` is a field of this form.
 */
function showProblems(form, alertSlot, fields) {
  const first = showFieldErrors(form, fields || {});
  if (!first) return false;
  const count = form.querySelectorAll(".field--invalid").length;
  const summary = count === 1 ? "Please fix the highlighted field." : `Please fix the ${count} highlighted fields.`;
  alertSlot.replaceChildren(formAlert(summary));
  announce(summary, { assertive: true });
  first.focus();
  return true;
}

/** Only same-site paths are allowed as the place to return to after signing in. */
export function safeNext(next) {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/api/")) return "/";
  if (next.startsWith("/signin") || next.startsWith("/signup")) return "/";
  return next;
}

// Why the school sign-in sent the learner back here: the SSO callback redirects to /signin?error=<code>.
const SSO_RETRY = "Your school's sign-in didn't go through — try again.";
const SSO_ERRORS = {
  sso_denied: "Sign-in was cancelled at your school.",
  sso_state_mismatch: "That sign-in link expired — try again.",
  sso_unavailable: "Your school's sign-in service is unreachable.",
  sso_exchange_failed: SSO_RETRY,
  sso_invalid_token: SSO_RETRY,
  sso_provider_error: SSO_RETRY,
  sso_email_taken: "This email belongs to another school account.",
  account_disabled: "This account has been turned off. Ask your school to turn it back on.",
};
const SSO_GENERIC = "Signing in with your school didn't work — try again, or sign in with your email.";

/** The message for a sign-in error code; unknown codes get a generic one rather than the raw code. */
export function ssoErrorMessage(code) {
  return Object.hasOwn(SSO_ERRORS, code) ? SSO_ERRORS[code] : SSO_GENERIC;
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
    const message = apiErr.status === 429 && apiErr.retryAfter ? tryAgainIn(apiErr.retryAfter) : apiErr.message;
    // Every field the server named, at once, next to its field; anything else above the form.
    if (showProblems(form, alertSlot, apiErr.fields)) return null;
    alertSlot.replaceChildren(formAlert(message));
    announce(message, { assertive: true });
    form.querySelector("input").focus();
    return null;
  } finally {
    button.disabled = false;
    button.classList.remove("is-loading");
  }
}

export async function signInView(ctx) {
  const { app, query } = ctx;
  const next = safeNext(query.get("next"));
  const errorCode = query.get("error");
  const errorMessage = errorCode ? ssoErrorMessage(errorCode) : "";
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
  onAuthSubmit(app, form, alertSlot, "/api/auth/login", (user) => `Welcome back, ${user.name}!`, next, {
    signedIn: forgetNewAccount,
  });
  // Above the SSO button too, so it is the first thing read; the form's own alerts replace it on submit.
  const ssoAlert = errorMessage ? h("div", { class: "form-alert-slot auth__sso-error" }, formAlert(errorMessage)) : null;
  form.addEventListener("submit", () => ssoAlert && ssoAlert.remove());
  const body = h(
    "div",
    {},
    ssoAlert,
    ssoBlock(app.config, next),
    form,
    app.config.registration
      ? h("p", { class: "auth__switch" }, "New here? ", h("a", { href: withNext("/signup", next) }, "Create an account"))
      : null,
  );
  return {
    title: "Sign in",
    el: authShell("Welcome back", "Sign in to continue learning.", body),
    mounted: () => {
      if (!errorCode) return;
      announce(errorMessage, { assertive: true });
      // Drop the code from the address so a reload or a shared link does not show a stale failure.
      history.replaceState(history.state, "", withNext("/signin", next));
    },
  };
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
      hint: "The address you sign in with, e.g. name@school.org.",
      control: h("input", { type: "email", name: "email", autocomplete: "email", required: true }),
    }),
    field({
      id: "signup-password",
      label: "Password",
      hint: passwordRule(app.config),
      control: h("input", { type: "password", name: "password", autocomplete: "new-password", required: true }),
    }),
    h("button", { type: "submit", class: "btn btn--primary btn--block" }, "Create account"),
  );
  onAuthSubmit(app, form, alertSlot, "/api/auth/register", (user) => `Welcome, ${user.name}! Your account is ready.`, next, {
    check: (data) => signUpProblems(data, app.config),
    signedIn: rememberNewAccount,
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

function sessionRow(item) {
  const where = item.user_agent || "An unknown browser";
  return h(
    "li",
    { class: "row-item" },
    h(
      "div",
      { class: "row-item__body" },
      h("span", { class: "row-item__title" }, where),
      h("span", { class: "row-item__sub" }, `Signed in ${formatDateTime(item.created_at)} · last used ${formatDateTime(item.last_seen_at)}`),
    ),
    item.current ? h("span", { class: "badge" }, "This browser") : null,
  );
}

function passwordForm(app) {
  const alertSlot = h("div", { class: "form-alert-slot" });
  const form = h(
    "form",
    { class: "form", novalidate: true },
    alertSlot,
    field({
      id: "account-current-password",
      label: "Current password",
      control: h("input", { type: "password", name: "current_password", autocomplete: "current-password", required: true }),
    }),
    field({
      id: "account-new-password",
      label: "New password",
      hint: passwordRule(app.config),
      control: h("input", { type: "password", name: "new_password", autocomplete: "new-password", required: true }),
    }),
    h("button", { type: "submit", class: "btn btn--primary" }, "Change password"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const done = await submitForm(form, alertSlot, () => post("/api/auth/password", data));
    if (!done) return;
    form.reset();
    const others = done.other_sessions_ended;
    const message = others
      ? `Password changed. You were signed out on ${others} other ${others === 1 ? "device" : "devices"}.`
      : "Password changed.";
    alertSlot.replaceChildren(formAlert(message, "info"));
    app.toast(message);
  });
  return form;
}

export async function accountView(ctx) {
  const { app, signal } = ctx;
  const me = app.me;
  if (!me) return { title: "Account", el: h("p", {}, "Please sign in.") };
  const sessions = await get("/api/auth/sessions", { signal });

  const everywhere = h("button", { type: "button", class: "btn btn--outline" }, icon("logout", { size: 18 }), "Sign out everywhere");
  everywhere.addEventListener("click", async () => {
    everywhere.disabled = true;
    try {
      await post("/api/auth/logout-all");
    } catch (err) {
      everywhere.disabled = false;
      app.toast(err instanceof ApiError ? err.message : "Signing out everywhere didn't work — try again.", { tone: "error" });
      return;
    }
    app.me = null;
    app.drawHeader();
    app.toast("You are signed out on every device.");
    app.navigate("/signin", { replace: true, force: true });
  });

  const el = h(
    "div",
    { class: "stack-lg" },
    h("section", { class: "card stack" }, h("p", { class: "eyebrow" }, "Account"), h("h1", {}, "Your account"), h("p", { class: "muted" }, me.email)),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "account-password" },
      sectionHeader("Change password", { id: "account-password" }),
      me.sso
        ? h("p", { class: "muted" }, "You sign in with your school, so your password is changed there.")
        : [h("p", { class: "muted" }, "Changing it signs you out on your other devices; this one stays signed in."), passwordForm(app)],
    ),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "account-sessions" },
      sectionHeader("Where you're signed in", { id: "account-sessions" }),
      h("ul", { class: "row-list", role: "list" }, sessions.items.map(sessionRow)),
      h("p", { class: "muted" }, "Lost a device, or signed in on a shared computer? End every session, this one too."),
      h("div", {}, everywhere),
    ),
  );
  return { title: "Account", el };
}
