"""Text-to-speech with a piper voice shared by all lessons, one sentence at a time in a worker thread."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection
from concurrent.futures import Executor
from typing import Any, TypeVar

import numpy as np
import soxr
from pipecat.frames.frames import ErrorFrame, Frame, InterruptionFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator
from pipecat.utils.text.transforms.text_transform import TextTransform

from server.pipeline.compute import CpuGate, gated
from server.pipeline.models import LoadedVoice
from server.pipeline.phrases import PhraseCache

log = logging.getLogger(__name__)

T = TypeVar("T")

# Synthesis time grows with the length of what is synthesized, so a long sentence is spoken clause by clause:
# the first clause plays while the next is made. Breaking only after a few words keeps the prosody natural.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")
MIN_CLAUSE_WORDS = 4
# A clause is urgent when less than this much of the reply's earlier audio is left to play: it goes to the
# normal pool. With more slack it goes to the lower-priority pool, so that under load one lesson's long
# reply does not hold up another lesson's first words.
URGENT_SLACK_SECS = 0.6
# The tutor's voice waiting this long for its next words is logged: the server is short of CPU for its lessons.
STALL_LOG_SECS = 0.25


# The tutor cites the teacher's passages as [1], [2] (voice.materials.prompt): the transcript keeps the marks,
# which the page shows beside the sources, but the learner should not hear "one".
_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*[,;-]\s*\d{1,3})*\]")


async def without_citations(text: str, _text_type: str | TextType = "*") -> str:
    """`text` as it is spoken: without passage citations such as "[1]" or "[1, 2]"."""
    return _CITATION.sub("", text)


# What every TTS stage is given (pipecat's text_transforms: only the text sent to the TTS changes).
SPOKEN_TEXT_TRANSFORMS: list[tuple[TextType | str, TextTransform]] = [("*", without_citations)]


def split_clauses(text: str) -> list[str]:
    """Split at commas, semicolons and colons, but never into clauses shorter than MIN_CLAUSE_WORDS words."""
    parts = [p for p in _CLAUSE_BREAK.split(text.strip()) if p]
    clauses: list[str] = []
    for part in parts:
        if clauses and len(clauses[-1].split()) < MIN_CLAUSE_WORDS:
            clauses[-1] = f"{clauses[-1]} {part}"
        else:
            clauses.append(part)
    if len(clauses) > 1 and len(clauses[-1].split()) < MIN_CLAUSE_WORDS:
        last = clauses.pop()
        clauses[-1] = f"{clauses[-1]} {last}"
    return clauses


# When nobody is hearing anything yet, the first words are what the learner waits for: a first clause longer
# than QUICK_START_MAX_WORDS is cut after 3 to 7 words, at a sentence end or before a word that starts a new
# phrase, so its audio is ready in about half the time. The rest is made while those words play.
QUICK_START_MAX_WORDS = 5
QUICK_START_HEAD = range(3, 8)
_PHRASE_STARTS = frozenset(
    "and but or so because which who whose where when while if that then like from with until before after "
    "since".split()
)


def quick_start(clause: str) -> list[str]:
    """Split a long first clause into a short head that can be spoken at once and the rest."""
    words = clause.split()
    if len(words) <= QUICK_START_MAX_WORDS:
        return [clause]
    for i in QUICK_START_HEAD:
        if i >= len(words) - 1:
            break
        ends_sentence = words[i - 1][-1] in ".!?"
        if ends_sentence or words[i].lower().strip(",;:") in _PHRASE_STARTS:
            return [" ".join(words[:i]), " ".join(words[i:])]
    return [clause]


def phonemize(voice: LoadedVoice, text: str, lock: threading.Lock, urgent: bool = False) -> list[list[str]]:
    """Text to phonemes, one list per sentence or long clause; espeak-ng is process-global, hence the lock.

    `urgent`: nothing is playing, so the first clause is split for a quick start (see quick_start).
    """
    clauses = split_clauses(text)
    if urgent and clauses:
        clauses = quick_start(clauses[0]) + clauses[1:]
    with lock:
        return [phonemes for clause in clauses for phonemes in voice.voice.phonemize(clause)]


def synthesize_sentence(voice: LoadedVoice, phonemes: list[str], length_scale: float, out_rate: int) -> bytes:
    """One sentence's phonemes to int16 mono PCM at `out_rate` (blocking: run it in a worker thread)."""
    from piper import SynthesisConfig

    ids = voice.voice.phonemes_to_ids(phonemes)
    audio = voice.voice.phoneme_ids_to_audio(ids, SynthesisConfig(length_scale=length_scale))
    if isinstance(audio, tuple):
        audio = audio[0]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    # Same loudness normalization as PiperVoice.synthesize.
    audio = np.zeros_like(audio) if peak < 1e-8 else audio / peak
    if voice.sample_rate != out_rate:
        audio = soxr.resample(audio, voice.sample_rate, out_rate)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


# A reply's first words go to the voice before the model has finished its first sentence: at a clause break
# after at least FIRST_WORDS_MIN words, or before a word that starts a new phrase once that many are written.
# A small model writes about 50 words a second, so a 20-word first sentence would keep the learner waiting
# 0.4 s longer than its first clause.
FIRST_WORDS_MIN = 4
_CLAUSE_END = re.compile(r"[,;:]\s")


def first_words(buffer: str) -> str | None:
    """The head of a reply's unfinished first sentence that can be spoken now, or None to keep waiting."""
    if any(c in buffer for c in ".!?"):
        return None  # a sentence end is pending: the sentence aggregator decides
    text = buffer.lstrip()
    for clause in _CLAUSE_END.finditer(text):
        head = text[: clause.start() + 1]
        if len(head.split()) >= FIRST_WORDS_MIN:
            return head
    words = buffer.split()
    if not buffer[-1:].isspace():
        words = words[:-1]  # the last word may still be growing
    for i in range(FIRST_WORDS_MIN, len(words)):
        if words[i].lower() in _PHRASE_STARTS:
            return " ".join(words[:i])
    return None


class QuickFirstWords(SimpleTextAggregator):
    """pipecat's sentence aggregation, except that a reply's first words are released early (first_words)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._released = False

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        async for aggregation in super().aggregate(text):
            self._released = True
            yield aggregation
        if not self._released and self.aggregation_type == TextType.SENTENCE:
            head = first_words(self._text)
            if head is not None:
                self._released = True
                start = self._text.index(head) + len(head)
                self._text = self._text[start:]
                yield Aggregation(text=head, type=TextType.SENTENCE)

    async def flush(self) -> Aggregation | None:
        self._released = False
        return await super().flush()

    async def handle_interruption(self) -> None:
        self._released = False
        await super().handle_interruption()

    async def reset(self) -> None:
        self._released = False
        await super().reset()


class SharedPiperTTSService(TTSService):
    """pipecat TTS over a piper voice loaded once per process (pipecat's PiperTTSService loads per instance).

    The LLM's streamed text reaches here sentence by sentence (pipecat's sentence aggregation), so the
    first sentence is spoken while the LLM is still writing the rest.
    """

    def __init__(
        self,
        *,
        voice: LoadedVoice,
        length_scale: float,
        executor: Executor,
        phonemizer_lock: threading.Lock,
        background_executor: Executor | None = None,
        phrase_cache: PhraseCache | None = None,
        fixed_phrases: Collection[str] = (),
        cpu_gate: CpuGate | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model="piper", voice=voice.name, language="en"),
            **kwargs,  # type: ignore[arg-type]
        )
        # A reply's first clause is spoken while the model still writes the rest of its first sentence.
        upstream = self._text_aggregator
        self._text_aggregator = QuickFirstWords(aggregation_type=upstream.aggregation_type, language=upstream.language)
        self._voice = voice
        self._length_scale = length_scale
        self._executor = executor
        self._background = background_executor or executor
        self._lock = phonemizer_lock
        self._gate = cpu_gate
        self._phrase_cache = phrase_cache
        self._fixed_phrases = frozenset(p.strip() for p in fixed_phrases)
        # Monotonic time at which the audio synthesized so far will have finished playing.
        self._playing_until = 0.0
        self._context_id: str | None = None

    def can_generate_metrics(self) -> bool:
        return True

    def _urgent(self) -> bool:
        """Whether the learner is waiting for this audio: less than URGENT_SLACK_SECS of earlier audio to play."""
        return self._playing_until - time.monotonic() <= URGENT_SLACK_SECS

    def _gated(self, fn: Callable[..., T], urgent_at: float) -> Callable[..., T]:
        """`fn` holding a slot of the CPU gate, urgent from `urgent_at` (model calls only; compute.py)."""
        return fn if self._gate is None else gated(self._gate, fn, urgent_at)

    async def _run(self, fn: Callable[..., T], *args: Any, model_call: bool = False) -> T:
        """Run `fn` on the normal pool when someone is waiting for its audio, else on the lower-priority one.

        A job queued at low priority behind other lessons' clauses is moved to the normal pool if it has not
        started by the time it becomes urgent (less than URGENT_SLACK_SECS of earlier audio left to play).
        A `model_call` also waits for a core at the CPU gate, behind urgent calls until that time.
        """
        loop = asyncio.get_running_loop()
        now_urgent = self._gated(fn, 0.0) if model_call else fn
        if self._urgent() or self._background is self._executor:
            return await loop.run_in_executor(self._executor, now_urgent, *args)
        urgent_at = self._playing_until - URGENT_SLACK_SECS
        queued = self._background.submit(self._gated(fn, urgent_at) if model_call else fn, *args)
        waiting = asyncio.wrap_future(queued)
        try:
            done, _ = await asyncio.wait({waiting}, timeout=max(0.0, urgent_at - time.monotonic()))
        except asyncio.CancelledError:
            queued.cancel()  # the learner interrupted: a job still queued is not worth the CPU
            raise
        if not done and queued.cancel():
            return await loop.run_in_executor(self._executor, now_urgent, *args)
        return await waiting

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            self._playing_until = 0.0  # the queued audio was dropped: the next reply is urgent again
        await super().process_frame(frame, direction)

    def _cache_key(self, text: str) -> tuple[str, float, int, str] | None:
        """Where a fixed phrase's audio is cached (None for any other text, or without a cache)."""
        text = text.strip()
        if self._phrase_cache is None or text not in self._fixed_phrases:
            return None
        return (self._voice.name, self._length_scale, self.sample_rate, text)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        key = self._cache_key(text)
        cached = None if key is None or self._phrase_cache is None else self._phrase_cache.get(key)
        if cached is not None:
            await self.start_tts_usage_metrics(text)
            await self.stop_ttfb_metrics()
            for pcm in cached:
                self._context_id = context_id
                self._playing_until = max(time.monotonic(), self._playing_until) + len(pcm) / (2 * self.sample_rate)
                yield TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=context_id)
            return
        spoken: list[bytes] = []
        async for frame in self._synthesize(text, context_id):
            if isinstance(frame, TTSAudioRawFrame):
                spoken.append(frame.audio)
            elif isinstance(frame, ErrorFrame):
                key = None  # a phrase that failed part-way is not kept
            yield frame
        if key is not None and spoken and self._phrase_cache is not None:
            self._phrase_cache.put(key, spoken)

    async def _synthesize(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        # When this audio was asked for: the text's arrival, then each time the clause before it was handed on.
        asked = time.monotonic()
        try:
            await self.start_tts_usage_metrics(text)
            sentences = await self._run(phonemize, self._voice, text, self._lock, self._urgent())
            for phonemes in sentences:
                if not phonemes:
                    continue
                pcm = await self._run(
                    synthesize_sentence, self._voice, phonemes, self._length_scale, self.sample_rate, model_call=True
                )
                now = time.monotonic()
                # Asked for while the reply's earlier audio still played, yet ready only well after it ended.
                late = now - self._playing_until
                if context_id == self._context_id and asked < self._playing_until and late > STALL_LOG_SECS:
                    log.warning(
                        "voice: the tutor's voice waited %.2f s for its next words (the server is short of CPU "
                        "for its lessons)",
                        late,
                    )
                self._context_id = context_id
                self._playing_until = max(now, self._playing_until) + len(pcm) / (2 * self.sample_rate)
                await self.stop_ttfb_metrics()
                yield TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=context_id)
                asked = time.monotonic()
        except Exception as exc:
            log.exception("voice: speech synthesis failed")
            yield ErrorFrame(error=f"speech synthesis failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
