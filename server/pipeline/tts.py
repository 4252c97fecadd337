"""Text-to-speech with a piper voice shared by all lessons, one sentence at a time in a worker thread."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import Executor

import numpy as np
import soxr
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from server.pipeline.models import LoadedVoice

log = logging.getLogger(__name__)

# Synthesis time grows with the length of what is synthesized, so a long sentence is spoken clause by clause:
# the first clause plays while the next is made. Breaking only after a few words keeps the prosody natural.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")
MIN_CLAUSE_WORDS = 4


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


def phonemize(voice: LoadedVoice, text: str, lock: threading.Lock) -> list[list[str]]:
    """Text to phonemes, one list per sentence or long clause; espeak-ng is process-global, hence the lock."""
    with lock:
        return [phonemes for clause in split_clauses(text) for phonemes in voice.voice.phonemize(clause)]


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
        **kwargs: object,
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model="piper", voice=voice.name, language="en"),
            **kwargs,  # type: ignore[arg-type]
        )
        self._voice = voice
        self._length_scale = length_scale
        self._executor = executor
        self._lock = phonemizer_lock

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        loop = asyncio.get_running_loop()
        try:
            await self.start_tts_usage_metrics(text)
            sentences = await loop.run_in_executor(self._executor, phonemize, self._voice, text, self._lock)
            for phonemes in sentences:
                if not phonemes:
                    continue
                pcm = await loop.run_in_executor(
                    self._executor,
                    synthesize_sentence,
                    self._voice,
                    phonemes,
                    self._length_scale,
                    self.sample_rate,
                )
                await self.stop_ttfb_metrics()
                yield TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=context_id)
        except Exception as exc:
            log.exception("voice: speech synthesis failed")
            yield ErrorFrame(error=f"speech synthesis failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
