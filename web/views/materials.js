// A companion's materials on its page (upload, list, downloads, delete for its author; names for everyone), and
// the "Sources:" line under a tutor's bubble that names the passages it was given.

import { ApiError, del, get, patch } from "../api.js";
import { announce, formatDate, h, plural } from "../dom.js";
import { formAlert } from "../components.js";
import { icon } from "../icons.js";

function sizeText(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, "")} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return plural(bytes, "byte");
}

/** "handout.pdf, p. 2" / "notes.md, Plants" / "notes.txt": how one source is named to the learner. */
export function sourceLabel(source) {
  const name = String((source && source.material) || "a material");
  if (source && source.page) return `${name}, p. ${source.page}`;
  if (source && source.heading) return `${name}, ${source.heading}`;
  return name;
}

/** "Sources: handout.pdf, p. 2; notes.txt" under a tutor bubble, or null for a line that drew on none. */
export function sourcesNote(sources) {
  const labels = [];
  for (const source of sources || []) {
    const label = sourceLabel(source);
    if (!labels.includes(label)) labels.push(label);
  }
  if (!labels.length) return null;
  return h(
    "p",
    { class: "bubble__sources" },
    icon("book", { size: 14 }),
    h("span", {}, `Sources: ${labels.join("; ")}`),
  );
}

/** POST a file as multipart form data; the JSON API client only sends JSON. */
async function uploadFile(path, file, allowDownload) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("allow_download", allowDownload ? "true" : "false");
  let response;
  try {
    response = await fetch(path, { method: "POST", body: form, credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch {
    throw new ApiError(0, "network_error", "The server could not be reached. Check your connection and try again.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    // Quart's own 413 (a body over the upload route's limit) says nothing a learner can use.
    const tooBig = response.status === 413 && error.code !== "file_too_large";
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      tooBig ? "This file is too big to upload." : error.message || `The server answered ${response.status}.`,
      error.fields,
    );
  }
  return data;
}

/** The Materials section of a companion's page; null (nothing shown) for a viewer with nothing to see. */
export async function materialsSection(companion, app, { signal } = {}) {
  const base = `/api/companions/${companion.id}/materials`;
  let list;
  try {
    list = await get(base, { signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    return null; // the lesson page works without it
  }
  if (!list.can_manage && !list.items.length) return null;

  const status = h("div", { class: "materials__status", "aria-live": "polite" });
  const items = h("ul", { class: "materials__list", id: "materials-list" });
  const usage = h("p", { class: "materials__usage muted small" });

  function showError(message) {
    status.replaceChildren(formAlert(message));
  }

  function item(material) {
    const parts = [
      h(
        "div",
        { class: "materials__file" },
        icon("book", { size: 18 }),
        h("span", { class: "materials__name" }, material.filename),
        h(
          "span",
          { class: "muted small" },
          `${sizeText(material.size_bytes)} · ${plural(material.passages_count, "passage")} · added ${formatDate(material.created_at)}`,
        ),
      ),
    ];
    const actions = h("div", { class: "materials__actions" });
    if (material.downloadable) {
      actions.append(
        h(
          "a",
          { class: "btn btn--ghost btn--sm", href: `${base}/${material.id}/download`, download: material.filename },
          "Download",
          h("span", { class: "visually-hidden" }, ` ${material.filename}`),
        ),
      );
    }
    if (list.can_manage) {
      const toggle = h("input", { type: "checkbox", checked: material.allow_download, id: `material-${material.id}-download` });
      toggle.addEventListener("change", async () => {
        toggle.disabled = true;
        try {
          const updated = await patch(`${base}/${material.id}`, { allow_download: toggle.checked });
          material.allow_download = updated.allow_download;
          announce(updated.allow_download ? `Learners may now download ${material.filename}.` : `Learners can no longer download ${material.filename}.`);
        } catch (err) {
          toggle.checked = material.allow_download;
          showError(err.message);
        } finally {
          toggle.disabled = false;
        }
      });
      actions.append(
        h("label", { class: "materials__toggle", for: toggle.id }, toggle, h("span", {}, "Learners may download"), h("span", { class: "visually-hidden" }, ` ${material.filename}`)),
        h(
          "button",
          {
            type: "button",
            class: "btn btn--ghost btn--sm btn--danger-text",
            onclick: async () => {
              if (!window.confirm(`Delete ${material.filename}? The tutor stops using its passages at once.`)) return;
              try {
                await del(`${base}/${material.id}`);
                list.items = list.items.filter((m) => m.id !== material.id);
                list.used_bytes -= material.size_bytes;
                draw();
                announce(`${material.filename} was deleted.`);
              } catch (err) {
                showError(err.message);
              }
            },
          },
          icon("trash", { size: 16 }),
          "Delete",
          h("span", { class: "visually-hidden" }, ` ${material.filename}`),
        ),
      );
    }
    parts.push(actions);
    return h("li", { class: "materials__item" }, parts);
  }

  function draw() {
    items.replaceChildren(...list.items.map(item));
    items.hidden = !list.items.length;
    empty.hidden = Boolean(list.items.length);
    usage.textContent = list.can_manage
      ? `${sizeText(list.used_bytes)} of ${sizeText(list.max_companion_bytes)} used; each file up to ${sizeText(list.max_file_bytes)}.`
      : "";
  }

  const empty = h(
    "p",
    { class: "muted" },
    "No materials yet. Add a handout or notes, and the tutor will draw on them and show them as sources.",
  );

  let form = null;
  if (list.can_manage) {
    const fileInput = h("input", { type: "file", name: "file", id: "material-file", accept: ".pdf,.md,.markdown,.txt,.text", required: true, "aria-describedby": "material-file-hint" });
    const allow = h("input", { type: "checkbox", name: "allow_download", id: "material-allow" });
    const submit = h("button", { type: "submit", class: "btn btn--primary btn--sm" }, icon("plus", { size: 16 }), "Upload");
    form = h(
      "form",
      { class: "materials__form", id: "material-form" },
      h(
        "div",
        { class: "field" },
        h("label", { class: "field__label", for: fileInput.id }, "Add a file"),
        h("p", { class: "field__hint", id: "material-file-hint" }, "PDF, Markdown or plain text."),
        fileInput,
      ),
      h("label", { class: "materials__toggle", for: allow.id }, allow, h("span", {}, "Learners may download it")),
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = fileInput.files && fileInput.files[0];
      if (!file) {
        showError("Choose a file to upload first.");
        return;
      }
      submit.disabled = true;
      status.replaceChildren(h("p", { class: "muted" }, `Uploading ${file.name}…`));
      try {
        const material = await uploadFile(base, file, allow.checked);
        list.items.push(material);
        list.used_bytes += material.size_bytes;
        draw();
        form.reset();
        status.replaceChildren(formAlert(`${material.filename} was added: ${plural(material.passages_count, "passage")} for the tutor.`, "info"));
      } catch (err) {
        showError(err instanceof ApiError ? err.message : "The file could not be uploaded.");
      } finally {
        submit.disabled = false;
      }
    });
  }

  draw();
  return h(
    "section",
    { class: "card materials", "aria-labelledby": "materials-title", id: "materials" },
    h("div", { class: "section-header" }, h("h2", { id: "materials-title" }, "Materials")),
    list.can_manage
      ? h("p", { class: "muted" }, "The tutor looks up what the learner asks in these files and cites the passages it uses. Learners see only their names unless you allow downloads.")
      : null,
    list.can_manage ? empty : null,
    items,
    form,
    usage,
    status,
  );
}
