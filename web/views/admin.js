// The administrator's console: school usage and status, users, settings, safety flags and the audit log.

import { ApiError, del, get, patch, post, withQuery } from "../api.js";
import { announce, capitalize, formatDate, formatDateTime, h, plural } from "../dom.js";
import { emptyState, field, formAlert, pagination, sectionHeader } from "../components.js";
import { icon } from "../icons.js";
import { alertsList, dataTable, flagsTable } from "./teacher.js";

const SECTIONS = [
  { id: "", label: "Overview", title: "School overview" },
  { id: "users", label: "Users", title: "Users" },
  { id: "safety", label: "Safety", title: "Safety flags and alerts" },
  { id: "audit", label: "Audit log", title: "Audit log" },
  { id: "settings", label: "Settings", title: "School settings" },
];
const ROLES = ["learner", "teacher", "admin"];
const USERS_PAGE = 20;
const AUDIT_PAGE = 25;

function sectionNav(current) {
  return h(
    "nav",
    { class: "console-tabs", "aria-label": "Administration" },
    h(
      "ul",
      {},
      SECTIONS.map((s) =>
        h(
          "li",
          {},
          h("a", { href: s.id ? `/admin/${s.id}` : "/admin", class: "console-tabs__link", "aria-current": s.id === current ? "page" : null }, s.label),
        ),
      ),
    ),
  );
}

function shell(section, ...body) {
  const meta = SECTIONS.find((s) => s.id === section) || SECTIONS[0];
  return {
    title: `${meta.title} · Administration`,
    el: h(
      "div",
      { class: "stack-lg console", dataset: { adminSection: section || "overview" } },
      h("div", { class: "page-head" }, h("div", {}, h("p", { class: "eyebrow" }, "Administration"), h("h1", {}, meta.title))),
      sectionNav(section),
      ...body,
    ),
  };
}

export async function adminView(ctx) {
  const section = ctx.params.section || "";
  if (section === "users") return usersSection(ctx);
  if (section === "settings") return settingsSection(ctx);
  if (section === "audit") return auditSection(ctx);
  if (section === "safety") return safetySection(ctx);
  return overviewSection(ctx);
}

// -- overview: usage across the school and what `tutor doctor` says ----------------------------------------

function stat(value, label) {
  return h("div", { class: "stat card" }, h("span", { class: "stat__value" }, String(value)), h("span", { class: "stat__label" }, label));
}

async function overviewSection(ctx) {
  const { signal } = ctx;
  const [usage, status] = await Promise.all([get("/api/admin/usage", { signal }), get("/api/admin/status", { signal })]);
  const users = usage.users || {};
  const lessons = usage.lessons || {};
  const plans = usage.plans || {};
  const nearLimit = usage.near_limit || [];
  const checks = status.checks || [];
  const failing = checks.filter((c) => !c.ok).length;
  return shell(
    "",
    h(
      "section",
      { class: "stack", "aria-labelledby": "usage-title" },
      sectionHeader("Usage across the school", { id: "usage-title" }),
      h(
        "div",
        { class: "stats console-stats" },
        stat(users.learner ?? 0, "Learners"),
        stat(users.teacher ?? 0, "Teachers"),
        stat(users.admin ?? 0, "Administrators"),
        stat(users.disabled ?? 0, "Disabled accounts"),
        stat(lessons.total ?? 0, "Lessons in all"),
        stat(lessons.last_7_days ?? 0, "Lessons in the last 7 days"),
        stat(lessons.minutes_last_30_days ?? 0, "Minutes in the last 30 days"),
      ),
      h(
        "div",
        { class: "console-split" },
        h(
          "section",
          { class: "card stack", "aria-labelledby": "plans-title" },
          h("h3", { id: "plans-title" }, "Accounts by plan"),
          h(
            "dl",
            { class: "facts" },
            Object.entries(plans).map(([plan, n]) => h("div", {}, h("dt", {}, capitalize(plan)), h("dd", {}, String(n)))),
          ),
        ),
        h(
          "section",
          { class: "card stack", "aria-labelledby": "near-title" },
          h("h3", { id: "near-title" }, "Near their lesson limit"),
          nearLimit.length
            ? h(
                "ul",
                { class: "row-list", role: "list" },
                nearLimit.map((u) =>
                  h(
                    "li",
                    { class: "row-item" },
                    h("div", { class: "row-item__body" }, h("span", { class: "row-item__title" }, u.name), h("span", { class: "row-item__sub" }, `${capitalize(u.plan)} plan`)),
                    h("span", { class: "row-item__meta" }, `${u.lessons_used} of ${u.lessons_limit} lessons`),
                  ),
                ),
              )
            : h("p", { class: "muted" }, "Nobody is close to their plan's lesson limit."),
        ),
      ),
    ),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "status-title", id: "status" },
      sectionHeader("Server status", {
        id: "status-title",
        action: h("span", { class: `badge badge--${failing ? "error" : "info"}` }, failing ? `${plural(failing, "problem")}` : "All checks pass"),
      }),
      h("p", { class: "muted small" }, "What `tutor doctor` says about the models, the language model and the database."),
      h(
        "ul",
        { class: "row-list status-list", role: "list" },
        checks.map((c) =>
          h(
            "li",
            { class: `row-item status-item status-item--${c.ok ? "ok" : "fail"}`, dataset: { check: c.name } },
            h("span", { class: "status-item__icon" }, icon(c.ok ? "check" : "alert", { size: 18 })),
            h("div", { class: "row-item__body" }, h("span", { class: "row-item__title" }, c.name), h("span", { class: "row-item__sub" }, c.detail || "")),
            h("span", { class: `badge badge--${c.ok ? "info" : "error"}` }, c.ok ? "OK" : "Problem"),
          ),
        ),
      ),
    ),
  );
}

// -- users: search, role, plan, disable, export, delete ------------------------------------------------------

function downloadJson(data, filename) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function userRow(user, app) {
  const self = app.me && app.me.id === user.id;
  const row = h("tr", { dataset: { userId: user.id, disabled: user.disabled ? "true" : "false" } });

  /** Send one change; on refusal put the control back and say why. */
  async function change(body, revert, done) {
    try {
      const updated = await patch(`/api/admin/users/${user.id}`, body);
      Object.assign(user, updated);
      drawState();
      app.toast(done(updated));
      announce(done(updated));
    } catch (err) {
      revert();
      app.toast(err instanceof ApiError ? err.message : "The change was not saved.", { tone: "error" });
    }
  }

  const roleSelect = h(
    "select",
    { "aria-label": `Role of ${user.name}`, name: "role" },
    ROLES.map((r) => h("option", { value: r, selected: r === user.role }, capitalize(r))),
  );
  roleSelect.addEventListener("change", () =>
    change({ role: roleSelect.value }, () => (roleSelect.value = user.role), (u) => `${u.name} is now ${u.role === "admin" ? "an administrator" : `a ${u.role}`}.`),
  );
  const planSelect = h(
    "select",
    { "aria-label": `Plan of ${user.name}`, name: "plan" },
    (app.config.plans || []).map((p) => h("option", { value: p.id, selected: p.id === user.plan }, capitalize(p.id))),
  );
  planSelect.addEventListener("change", () =>
    change({ plan: planSelect.value }, () => (planSelect.value = user.plan), (u) => `${u.name} is now on the ${capitalize(u.plan)} plan.`),
  );
  const disableButton = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        const disabling = !user.disabled;
        if (disabling && !window.confirm(`Disable ${user.name}? They are signed out everywhere at once and cannot sign in until enabled.`)) return;
        disableButton.disabled = true;
        await change(
          { disabled: disabling },
          () => drawState(),
          (u) => (u.disabled ? `${u.name} is disabled and signed out.` : `${u.name} can sign in again.`),
        );
        // Disabling the button while the request ran dropped focus; give it back so the keyboard stays here.
        disableButton.focus();
      },
    },
  );
  const stateBadge = h("span");
  /** Show whether the account is on; the button keeps focus, so a keyboard user can turn it back at once. */
  function drawState() {
    row.dataset.disabled = user.disabled ? "true" : "false";
    stateBadge.className = `badge badge--${user.disabled ? "error" : "info"}`;
    stateBadge.textContent = user.disabled ? "Disabled" : "Active";
    disableButton.className = `btn btn--sm ${user.disabled ? "btn--outline" : "btn--ghost btn--danger-text"}`;
    disableButton.setAttribute("aria-label", `${user.disabled ? "Enable" : "Disable"} ${user.name}`);
    disableButton.textContent = user.disabled ? "Enable" : "Disable";
    disableButton.disabled = self;
  }
  const exportButton = h(
    "button",
    {
      type: "button",
      class: "btn btn--ghost btn--sm",
      "aria-label": `Export the data of ${user.name}`,
      onclick: async () => {
        exportButton.disabled = true;
        try {
          const data = await get(`/api/admin/users/${user.id}/export`);
          downloadJson(data, `tutor-export-${user.id}.json`);
          app.toast(`${user.name}'s data is downloading.`);
        } catch (err) {
          app.toast(err.message, { tone: "error" });
        } finally {
          exportButton.disabled = false;
        }
      },
    },
    "Export",
  );
  const deleteButton = h(
    "button",
    {
      type: "button",
      class: "btn btn--ghost btn--sm btn--danger-text",
      "aria-label": `Delete ${user.name}`,
      onclick: async () => {
        if (!window.confirm(`Delete ${user.name} (${user.email}) and all their data? This cannot be undone. Other learners' lessons stay.`)) return;
        deleteButton.disabled = true;
        try {
          await del(`/api/admin/users/${user.id}`);
          app.toast(`${user.name} was deleted.`);
          row.remove();
          announce(`${user.name} was deleted.`);
        } catch (err) {
          deleteButton.disabled = false;
          app.toast(err.message, { tone: "error" });
        }
      },
    },
    icon("trash", { size: 16 }),
    "Delete",
  );
  if (self) {
    // The server refuses an administrator demoting, disabling or deleting themselves; the page shows it up front.
    roleSelect.disabled = true;
    deleteButton.disabled = true;
  }
  row.append(
    h(
      "td",
      {},
      h("span", { class: "data-table__title" }, user.name, self ? h("span", { class: "muted small" }, " (you)") : null),
      h("span", { class: "data-table__sub" }, user.email, user.sso ? " · single sign-on" : ""),
      h("span", { class: "data-table__sub" }, `Joined ${formatDate(user.created_at)}`),
    ),
    h("td", {}, roleSelect),
    h("td", {}, planSelect),
    h("td", { class: "user-state" }, stateBadge),
    h("td", {}, String(user.lessons_count ?? 0)),
    h("td", { class: "data-table__date" }, user.last_active_at ? formatDateTime(user.last_active_at) : "Never"),
    h("td", { class: "data-table__actions" }, disableButton, exportButton, deleteButton),
  );
  drawState();
  return row;
}

async function usersSection(ctx) {
  const { app, query, signal } = ctx;
  const q = (query.get("q") || "").trim();
  const role = ROLES.includes(query.get("role")) ? query.get("role") : "";
  const pageNo = Math.max(1, Number.parseInt(query.get("page") || "1", 10) || 1);
  const data = await get(withQuery("/api/admin/users", { q, role, limit: USERS_PAGE, page: pageNo }), { signal });
  const hrefFor = (p) => withQuery("/admin/users", { q, role, page: p > 1 ? p : "" });

  const searchInput = h("input", { type: "search", id: "users-search", name: "q", value: q, placeholder: "Name or e-mail", autocomplete: "off" });
  const roleFilter = h(
    "select",
    { id: "users-role", name: "role" },
    h("option", { value: "" }, "Every role"),
    ROLES.map((r) => h("option", { value: r, selected: r === role }, `${capitalize(r)}s`)),
  );
  const form = h(
    "form",
    { class: "filters console-filters", role: "search", "aria-label": "Find users" },
    h("div", { class: "filters__search" }, h("label", { for: "users-search", class: "field__label" }, "Search by name or e-mail"), h("div", { class: "input-icon" }, icon("search", { size: 18 }), searchInput)),
    h("div", { class: "filters__select" }, h("label", { for: "users-role", class: "field__label" }, "Role"), roleFilter),
    h("button", { type: "submit", class: "btn btn--dark filters__submit" }, "Search"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    app.navigate(withQuery("/admin/users", { q: searchInput.value.trim(), role: roleFilter.value }));
  });
  roleFilter.addEventListener("change", () => app.navigate(withQuery("/admin/users", { q: searchInput.value.trim(), role: roleFilter.value })));

  const status = h(
    "p",
    { class: "results-status", role: "status" },
    q || role ? `${plural(data.total, "user")} found${q ? ` for “${q}”` : ""}` : `${plural(data.total, "user")} in the school`,
  );
  const table = data.users.length
    ? dataTable({
        id: "users-table",
        caption: "Users",
        captionHidden: true,
        columns: [
          { label: "User" },
          { label: "Role" },
          { label: "Plan" },
          { label: "State" },
          { label: "Lessons" },
          { label: "Last active" },
          { label: "Actions" },
        ],
        rows: data.users.map((u) => userRow(u, app)),
      })
    : emptyState({ iconName: "search", title: "No users match", text: "Try another name, e-mail or role." });

  return shell(
    "users",
    form,
    status,
    h("div", { class: "card stack" }, table),
    pagination({ page: pageNo, limit: USERS_PAGE, total: data.total, hrefFor }) || "",
  );
}

// -- settings: registration and data retention ---------------------------------------------------------------

async function settingsSection(ctx) {
  const { app, signal } = ctx;
  const current = await get("/api/admin/settings", { signal });

  const open = h("input", { type: "checkbox", name: "registration_open", id: "registration-open", checked: Boolean(current.registration_open) });
  const days = h("input", {
    type: "number",
    name: "retention_days",
    min: "1",
    max: "36500",
    step: "1",
    inputmode: "numeric",
    value: current.retention_days === null || current.retention_days === undefined ? "" : String(current.retention_days),
  });
  const slot = h("div", { class: "form-alert-slot" });
  const form = h(
    "form",
    { class: "form", novalidate: true, "aria-labelledby": "settings-form-title" },
    h("h2", { id: "settings-form-title" }, "Sign-up and data retention"),
    h(
      "div",
      { class: "field", dataset: { field: "registration_open" } },
      h("label", { class: "check-row", for: "registration-open" }, open, h("span", {}, "Anyone with the address can create an account (registration open)")),
      h("p", { class: "field__hint" }, "Closed: only an administrator creates accounts (`tutor users create`), and single sign-on still works."),
    ),
    field({
      id: "retention-days",
      label: "Delete transcripts older than (days)",
      hint: "Leave empty to keep transcripts until a learner or an administrator deletes them. Lessons stay; only their words go.",
      control: days,
    }),
    h("button", { type: "submit", class: "btn btn--primary" }, "Save settings"),
    slot,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const raw = days.value.trim();
    const n = raw === "" ? null : Number(raw);
    if (n !== null && (!Number.isInteger(n) || n < 1)) {
      slot.replaceChildren(formAlert("Enter a whole number of days (1 or more), or leave it empty to keep transcripts."));
      days.setAttribute("aria-invalid", "true");
      days.focus();
      return;
    }
    days.removeAttribute("aria-invalid");
    try {
      const saved = await patch("/api/admin/settings", { registration_open: open.checked, retention_days: n });
      const text = `Saved. Registration is ${saved.registration_open ? "open" : "closed"}; ${
        saved.retention_days ? `transcripts older than ${plural(saved.retention_days, "day")} are deleted` : "transcripts are kept"
      }.`;
      slot.replaceChildren(formAlert(text, "info"));
      app.config.registration = saved.registration_open;
      app.toast("Settings saved.");
    } catch (err) {
      slot.replaceChildren(formAlert(err.message));
    }
  });

  const runSlot = h("p", { class: "muted", role: "status" });
  const runButton = h(
    "button",
    {
      type: "button",
      class: "btn btn--outline",
      onclick: async () => {
        runButton.disabled = true;
        try {
          const result = await post("/api/admin/retention/run");
          runSlot.textContent = `${plural(result.transcripts_deleted, "transcript")} deleted.`;
        } catch (err) {
          runSlot.textContent = err.message;
        } finally {
          runButton.disabled = false;
        }
      },
    },
    "Apply retention now",
  );
  return shell(
    "settings",
    h("section", { class: "card" }, form),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "retention-title" },
      h("h2", { id: "retention-title" }, "Retention now"),
      h("p", { class: "muted" }, "The server applies the rule by itself every hour; this runs it at once."),
      runButton,
      runSlot,
    ),
  );
}

// -- safety: every flag and the administrator's alerts ----------------------------------------------------------

async function safetySection(ctx) {
  const { app, query, signal } = ctx;
  const severity = ["high", "medium", "low"].includes(query.get("severity")) ? query.get("severity") : "";
  const [flags, alerts] = await Promise.all([
    get(withQuery("/api/safety/flags", { severity, limit: 100 }), { signal }),
    get("/api/safety/alerts", { signal }),
  ]);
  const filter = h(
    "select",
    { id: "flags-severity", name: "severity" },
    h("option", { value: "" }, "Every severity"),
    ["high", "medium", "low"].map((s) => h("option", { value: s, selected: s === severity }, capitalize(s))),
  );
  filter.addEventListener("change", () => app.navigate(withQuery("/admin/safety", { severity: filter.value })));
  return shell(
    "safety",
    h(
      "section",
      { class: "card stack", "aria-labelledby": "admin-alerts-title" },
      sectionHeader("Alerts", { id: "admin-alerts-title", action: h("span", { class: "badge badge--error", hidden: !alerts.unread }, `${alerts.unread} new`) }),
      alerts.alerts.length ? alertsList(alerts.alerts, app) : emptyState({ iconName: "check", title: "No alerts", text: "High-severity flags raise an alert here." }),
    ),
    h(
      "section",
      { class: "card stack", "aria-labelledby": "admin-flags-title" },
      sectionHeader("Flags", { id: "admin-flags-title", action: h("div", { class: "filters__select" }, h("label", { for: "flags-severity", class: "field__label" }, "Severity"), filter) }),
      flags.flags.length
        ? flagsTable(flags.flags, { id: "admin-flags", caption: "Flags across the school", lessonHref: null })
        : emptyState({ iconName: "check", title: "No flags", text: severity ? "No flags of that severity." : "Nothing said in a lesson has been flagged." }),
    ),
  );
}

// -- audit log -------------------------------------------------------------------------------------------------

const ACTION_WORDS = {
  "transcript.read": "Read a transcript",
  "safety_flags.read": "Read safety flags",
  "user.create": "Created an account",
  "user.role": "Changed a role",
  "user.plan": "Changed a plan",
  "user.disable": "Disabled an account",
  "user.enable": "Enabled an account",
  "user.export": "Exported a learner's data",
  "user.delete": "Deleted an account",
  "settings.change": "Changed school settings",
  "retention.run": "Deleted old transcripts",
};

function detailText(detail) {
  if (detail === null || detail === undefined || detail === "") return "";
  if (typeof detail === "string") return detail;
  return Object.entries(detail)
    .map(([k, v]) => `${k.replace(/_/g, " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

async function auditSection(ctx) {
  const { query, signal } = ctx;
  const before = Number.parseInt(query.get("before") || "", 10);
  const data = await get(withQuery("/api/admin/audit", { limit: AUDIT_PAGE, before: Number.isFinite(before) ? before : "" }), { signal });
  const table = data.entries.length
    ? dataTable({
        id: "audit-table",
        caption: "Audit log, newest first",
        captionHidden: true,
        columns: [{ label: "When" }, { label: "Who" }, { label: "What" }, { label: "Learner" }, { label: "Lesson" }, { label: "Details", className: "data-table__wide" }],
        rows: data.entries.map((e) =>
          h(
            "tr",
            { dataset: { auditId: e.id, action: e.action } },
            h("td", { class: "data-table__date" }, formatDateTime(e.at)),
            h("td", {}, e.actor_email || (e.actor_id ? `#${e.actor_id}` : "The server")),
            h("td", {}, h("span", { class: "data-table__title" }, ACTION_WORDS[e.action] || e.action), h("code", { class: "data-table__sub" }, e.action)),
            h("td", {}, e.learner_name ? `${e.learner_name} (#${e.learner_id})` : e.learner_id ? `#${e.learner_id}` : "—"),
            h("td", {}, e.lesson_id ? `#${e.lesson_id}` : "—"),
            h("td", { class: "data-table__wide" }, detailText(e.detail)),
          ),
        ),
      })
    : emptyState({ iconName: "info", title: "Nothing in the audit log yet", text: "Transcript reads and changes to accounts are written here." });
  const older = data.next_before
    ? h("a", { class: "btn btn--ghost", href: withQuery("/admin/audit", { before: data.next_before }), rel: "next" }, "Older entries", icon("chevronRight"))
    : null;
  const newest = Number.isFinite(before) ? h("a", { class: "btn btn--ghost", href: "/admin/audit" }, icon("chevronLeft"), "Newest entries") : null;
  return shell(
    "audit",
    h("p", { class: "muted" }, "Every time a teacher or an administrator opens a learner's transcript, and every change made here, is written to this log."),
    h("div", { class: "card stack" }, table),
    older || newest ? h("nav", { class: "pagination", "aria-label": "Audit log pages" }, newest, older) : null,
  );
}
