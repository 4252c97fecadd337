// Inline SVG icons and the look of each subject (colour + icon), so the page needs no image files or fonts.

const PATHS = {
  logo:
    '<path d="M12 3a7 7 0 0 0-7 7v3.5A3.5 3.5 0 0 0 8.5 17H9v-6H7v-1a5 5 0 0 1 10 0v1h-2v6h.5a3.5 3.5 0 0 0 3.5-3.5V10a7 7 0 0 0-7-7Z" fill="currentColor" stroke="none"/><path d="M9 20.5c1 .4 2 .5 3 .5s2-.1 3-.5"/>',
  home: '<path d="M3 10.5 12 3l9 7.5"/><path d="M5 9.5V20h5v-6h4v6h5V9.5"/>',
  library: '<rect x="3" y="3" width="7" height="7" rx="1.5"/><rect x="14" y="3" width="7" height="7" rx="1.5"/><rect x="3" y="14" width="7" height="7" rx="1.5"/><rect x="14" y="14" width="7" height="7" rx="1.5"/>',
  journey: '<path d="M4 19c3-1 4-5 8-5s5 4 8 5"/><circle cx="12" cy="7" r="3.5"/>',
  plans: '<path d="M12 3l2.6 5.6 6.1.7-4.5 4.2 1.2 6L12 16.6 6.6 19.5l1.2-6L3.3 9.3l6.1-.7Z"/>',
  plus: '<path d="M12 5v14M5 12h14"/>',
  search: '<circle cx="11" cy="11" r="6.5"/><path d="m20 20-4.2-4.2"/>',
  bookmark: '<path d="M6.5 3.5h11a1 1 0 0 1 1 1V21l-6.5-4.5L5.5 21V4.5a1 1 0 0 1 1-1Z"/>',
  bookmarkFilled:
    '<path d="M6.5 3.5h11a1 1 0 0 1 1 1V21l-6.5-4.5L5.5 21V4.5a1 1 0 0 1 1-1Z" fill="currentColor"/>',
  clock: '<circle cx="12" cy="12" r="8.5"/><path d="M12 7.5V12l3 2"/>',
  mic: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21"/>',
  micOff:
    '<path d="M15 9.5V6a3 3 0 0 0-5.8-1.1M9 9v2a3 3 0 0 0 4.6 2.5"/><path d="M18.5 11a6.5 6.5 0 0 1-1 3.4M5.5 11a6.5 6.5 0 0 0 10.4 5.2M12 17.5V21M3 3l18 18"/>',
  phone:
    '<path d="M5 4h3.5l1.5 4.5-2 1.5a11 11 0 0 0 6 6l1.5-2 4.5 1.5V19a1.5 1.5 0 0 1-1.5 1.5A16.5 16.5 0 0 1 3.5 5.5 1.5 1.5 0 0 1 5 4Z"/>',
  phoneOff:
    '<path d="M3.5 12.5c4.7-4 12.3-4 17 0l-2 2.5-3.5-1.2V11c-2-.6-4-.6-6 0v2.8L5.5 15Z"/>',
  logout: '<path d="M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4"/><path d="M10 16l-4-4 4-4M6 12h10"/>',
  arrowLeft: '<path d="M19 12H5M11 6l-6 6 6 6"/>',
  arrowRight: '<path d="M5 12h14M13 6l6 6-6 6"/>',
  chevronLeft: '<path d="m15 6-6 6 6 6"/>',
  chevronRight: '<path d="m9 6 6 6-6 6"/>',
  check: '<path d="m5 12.5 4.5 4.5L19 7.5"/>',
  alert: '<path d="M12 4 2.5 20h19Z"/><path d="M12 10v4.5M12 17.3v.2"/>',
  info: '<circle cx="12" cy="12" r="8.5"/><path d="M12 11v5.5M12 7.7v.2"/>',
  trash: '<path d="M4.5 7h15M10 7V4.5h4V7M6.5 7l1 13h9l1-13"/>',
  edit: '<path d="M4 20h4L19 9l-4-4L4 16Z"/><path d="m13.5 6.5 4 4"/>',
  transcript: '<path d="M5 4.5h14v11H10l-5 4Z"/><path d="M8.5 8.5h7M8.5 11.5h5"/>',
  sparkle: '<path d="M12 3v4M12 17v4M3 12h4M17 12h4M6 6l2.5 2.5M15.5 15.5 18 18M18 6l-2.5 2.5M8.5 15.5 6 18"/>',
  user: '<circle cx="12" cy="8" r="4"/><path d="M4 20.5c1.5-4 4.5-6 8-6s6.5 2 8 6"/>',
  school: '<path d="M2.5 9 12 4.5 21.5 9 12 13.5Z"/><path d="M6.5 11v5c3 2.5 8 2.5 11 0v-5M21.5 9v5"/>',
  // Subject icons.
  maths: '<path d="M5 7.5h5M7.5 5v5M14 7.5h5M5.5 15.5l4 4M9.5 15.5l-4 4M14 15.5h5M14 19h5"/>',
  language:
    '<path d="M4 5h10v8H9l-3.5 3v-3H4Z"/><path d="M14 9h6v8h-1.5v3L15 17h-3v-2"/><path d="m7 11 2-4.5 2 4.5M7.7 9.7h2.6"/>',
  science:
    '<path d="M9.5 3.5h5M10.5 3.5v5.7L5 18.5a1.5 1.5 0 0 0 1.3 2.2h11.4a1.5 1.5 0 0 0 1.3-2.2l-5.5-9.3V3.5"/><path d="M7.5 14.5h9"/>',
  history:
    '<path d="M3.5 20.5h17M4.5 9.5h15M12 3.5l8 4.5H4Z"/><path d="M6.5 9.5v8M10 9.5v8M14 9.5v8M17.5 9.5v8"/>',
  coding: '<path d="m8 7-5 5 5 5M16 7l5 5-5 5M13.5 4.5l-3 15"/>',
  geography:
    '<circle cx="12" cy="12" r="8.5"/><path d="M3.5 12h17M12 3.5c2.5 2.5 3.5 5.5 3.5 8.5s-1 6-3.5 8.5c-2.5-2.5-3.5-5.5-3.5-8.5s1-6 3.5-8.5Z"/>',
  economics: '<path d="M3.5 20.5h17"/><path d="M4 16l5-5 4 3 7-8"/><path d="M15 6h5v5"/>',
  finance:
    '<ellipse cx="12" cy="6.5" rx="6.5" ry="2.5"/><path d="M5.5 6.5v5c0 1.4 2.9 2.5 6.5 2.5s6.5-1.1 6.5-2.5v-5M5.5 11.5v5c0 1.4 2.9 2.5 6.5 2.5s6.5-1.1 6.5-2.5v-5"/>',
  business:
    '<rect x="3.5" y="7.5" width="17" height="12" rx="2"/><path d="M9 7.5V5.5a1.5 1.5 0 0 1 1.5-1.5h3A1.5 1.5 0 0 1 15 5.5v2M3.5 12.5h17"/>',
  book: '<path d="M4 5.5A2 2 0 0 1 6 3.5h13v15H6a2 2 0 0 0-2 2Z"/><path d="M4 20.5a2 2 0 0 1 2-2h13v2"/>',
};

/** An inline SVG icon element; decorative (aria-hidden) unless a label is given. */
export function icon(name, { label = "", size = 20, className = "" } = {}) {
  const body = PATHS[name] || PATHS.book;
  const wrapper = document.createElement("span");
  wrapper.innerHTML =
    `<svg class="icon ${className}" width="${size}" height="${size}" viewBox="0 0 24 24" fill="none" ` +
    `stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" focusable="false"` +
    (label ? ` role="img" aria-label="${label.replace(/"/g, "&quot;")}"` : ' aria-hidden="true"') +
    `>${body}</svg>`;
  return wrapper.firstElementChild;
}

// Pastel backgrounds keep dark text above WCAG AA contrast; each subject also has a stronger accent.
const SUBJECTS = {
  maths: { colour: "#ffe08a", accent: "#8a5a00" },
  language: { colour: "#c4e8ff", accent: "#0b5a8a" },
  science: { colour: "#e6d4ff", accent: "#6233a8" },
  history: { colour: "#ffe7c2", accent: "#8a4b00" },
  coding: { colour: "#ffcde6", accent: "#a11f63" },
  geography: { colour: "#cdefc4", accent: "#2f6b1f" },
  economics: { colour: "#c6f5dc", accent: "#146c43" },
  finance: { colour: "#d9e2ff", accent: "#2e4a9e" },
  business: { colour: "#ffd9cc", accent: "#a33a12" },
};
const FALLBACK = [
  { colour: "#e4e7ec", accent: "#3f4756" },
  { colour: "#fde2e2", accent: "#9b1c1c" },
  { colour: "#d5f5f6", accent: "#0e6b70" },
];

/** Colour, accent and icon name for a subject (unknown subjects get a stable fallback). */
export function subjectLook(subject) {
  const known = SUBJECTS[subject];
  if (known) return { ...known, icon: subject };
  let hash = 0;
  for (const ch of String(subject)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return { ...FALLBACK[hash % FALLBACK.length], icon: "book" };
}

/** A rounded tile with the subject's icon on its colour. */
export function subjectTile(subject, size = "md") {
  const look = subjectLook(subject);
  const tile = document.createElement("span");
  tile.className = `subject-tile subject-tile--${size}`;
  tile.style.setProperty("--subject", look.colour);
  tile.style.setProperty("--subject-accent", look.accent);
  tile.append(icon(look.icon, { size: size === "lg" ? 36 : size === "sm" ? 18 : 24 }));
  return tile;
}
