"""The lessons' fixed phrases: framed as tutor turns of their own, and kept as audio once synthesized."""

from __future__ import annotations

import re
from collections import OrderedDict

from pipecat.frames.frames import Frame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, TTSSpeakFrame

# The lessons' fixed phrases (each companion's greeting, the goodbye, the apology) kept as audio, most recently
# used first: a greeting of about 5 s is about 240 KB at 24 kHz, so this holds at most about 15 MB.
PHRASE_CACHE_ENTRIES = 64

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [part for part in _SENTENCE_BREAK.split(text.strip()) if part]


def phrase_frames(text: str, *, interruptible: bool = True) -> list[Frame]:
    """A fixed phrase (greeting, apology, check-in, goodbye) to speak as a tutor turn of its own.

    pipecat ends a lone TTSSpeakFrame's assistant turn when the TTS's audio context for it ends, and that
    context also ends after 3 s without new audio (TTSService's stop_frame_timeout_s). When synthesis stalled
    that long (a busy CPU), the turn closed before its words had played: the greeting was never stored and
    stayed a partial line on the page. Framed as an LLM reply, the turn ends when LLMFullResponseEndFrame
    reaches the assistant aggregator, and the TTS queues that frame behind all of the phrase's audio and
    words, however long they take. One TTSSpeakFrame per sentence: each sentence's words follow its own
    audio, so a phrase the learner talks over keeps the sentences they heard.
    """
    frames: list[Frame] = [LLMFullResponseStartFrame()]
    frames += [TTSSpeakFrame(sentence) for sentence in sentences(text)]
    frames.append(LLMFullResponseEndFrame())
    for frame in frames:
        frame.interruptible = interruptible
    return frames


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
