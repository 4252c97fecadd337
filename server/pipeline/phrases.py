"""The lessons' fixed phrases, kept as audio once synthesized (see PhraseCache)."""

from __future__ import annotations

from collections import OrderedDict

# The lessons' fixed phrases (each companion's greeting, the goodbye, the apology) kept as audio, most recently
# used first: a greeting of about 5 s is about 240 KB at 24 kHz, so this holds at most about 15 MB.
PHRASE_CACHE_ENTRIES = 64


class PhraseCache:
    """Synthesized audio of the lessons' fixed phrases, shared by every lesson in the process.

    A class that starts together opens the same companion within seconds, and each lesson starts with the same
    greeting: synthesized once, every other learner hears it at once instead of each costing piper about
    0.3 s of CPU just when the server is busiest. Only the phrases a lesson names as fixed are kept, never
    the LLM's replies. Used from the event loop only.
    """

    def __init__(self, entries: int = PHRASE_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._audio: OrderedDict[tuple[str, float, int, str], list[bytes]] = OrderedDict()

    def get(self, key: tuple[str, float, int, str]) -> list[bytes] | None:
        audio = self._audio.get(key)
        if audio is not None:
            self._audio.move_to_end(key)
        return audio

    def put(self, key: tuple[str, float, int, str], audio: list[bytes]) -> None:
        self._audio[key] = audio
        self._audio.move_to_end(key)
        while len(self._audio) > self._entries:
            self._audio.popitem(last=False)

    def __len__(self) -> int:
        return len(self._audio)
