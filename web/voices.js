// The voices this server has installed, as the page names them (GET /api/config's `voices`).

import { capitalize } from "./dom.js";

/** Every installed voice, the default first. */
export function installedVoices(config) {
  return (config && config.voices) || [];
}

/**
 * The installed voice a companion speaks with: its own, or for a companion made before voices had names
 * ("male"/"female"), the one the server's voice x style table gives it. Null when its voice is no longer installed
 * (its lessons then speak with the default voice).
 */
export function companionVoice(config, companion) {
  const voices = installedVoices(config);
  const own = voices.find((v) => v.id === companion.voice);
  if (own) return own;
  const legacy = (config && config.legacy_voices) || {};
  const id = legacy[`${companion.voice}.${companion.style}`];
  return voices.find((v) => v.id === id) || null;
}

/** What the page calls a companion's voice: the installed voice's name, else the id it holds. */
export function voiceName(config, companion) {
  const voice = companionVoice(config, companion);
  return voice ? voice.name : companion.voice;
}

/** "English (United States) · Male": the language, and the speaker's gender only where the server knows it. */
export function voiceDetails(voice) {
  return [voice.language, voice.gender ? capitalize(voice.gender) : null].filter(Boolean).join(" · ");
}
