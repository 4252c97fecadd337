"""Speech-to-text on the one shared faster-whisper model, decoded in a worker thread sized for the machine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Whisper's encoder is trained on 30 s windows (3000 mel frames) and faster-whisper always pads to that,
# which costs ~0.45 s per utterance on 2 cores. Encoding a 10 s window instead costs ~0.07 s; with less
# padding tiny.en starts repeating itself ("No. No. No."), so the window never goes under 10 s, and a
# decoder that loops anyway is cut back to one copy (see _drop_repeats).
MIN_WINDOW_SECS = 10.0
MIN_REPEAT_TOKENS = 3
MAX_WINDOW_SECS = 30.0
# Generous bound on tokens per second of speech: a decoder that loops stops here.
MAX_TOKENS_PER_SEC = 6
NO_SPEECH_THRESHOLD = 0.6


@dataclass(frozen=True)
class WhisperOptions:
    language: str = "en"
    beam_size: int = 1


def transcribe_pcm(model: WhisperModel, pcm: bytes, options: WhisperOptions) -> str:
    """Transcribe 16 kHz int16 mono PCM to text; blocking, run it in a worker thread."""
    audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    seconds = len(audio) / SAMPLE_RATE
    if seconds == 0:
        return ""
    if seconds > MAX_WINDOW_SECS - 1:
        # Long monologues: faster-whisper's own chunking; materialize the lazy segments here, in the thread.
        segments, _ = model.transcribe(
            audio,
            language=options.language,
            beam_size=options.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH_THRESHOLD).strip()
    return _transcribe_window(model, audio, seconds, options)


def _transcribe_window(model: WhisperModel, audio: np.ndarray, seconds: float, options: WhisperOptions) -> str:
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    window = min(MAX_WINDOW_SECS, max(MIN_WINDOW_SECS, np.ceil(seconds) + 1.0))
    padded = np.zeros(int(window * SAMPLE_RATE), dtype=np.float32)
    padded[: len(audio)] = audio
    frames = int(window * SAMPLE_RATE) // model.feature_extractor.hop_length
    features = model.feature_extractor(padded)[:, :frames]
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        model.model.is_multilingual,
        task="transcribe",
        language=options.language if model.model.is_multilingual else None,
    )
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    result = model.model.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features[np.newaxis])),
        [prompt],
        beam_size=options.beam_size,
        max_length=len(prompt) + 10 + int(MAX_TOKENS_PER_SEC * seconds),
        suppress_blank=True,
        suppress_tokens=[-1],
        return_no_speech_prob=True,
    )[0]
    if result.no_speech_prob > NO_SPEECH_THRESHOLD:
        return ""
    tokens = _drop_repeats([t for t in result.sequences_ids[0] if t < tokenizer.eot])
    return str(tokenizer.decode(tokens)).strip()


def _drop_repeats(tokens: list[int]) -> list[int]:
    """Cut a decoder loop ("A B C A B C A B") back to its first period ("A B C")."""
    n = len(tokens)
    for period in range(MIN_REPEAT_TOKENS, n - MIN_REPEAT_TOKENS + 1):
        if n - period >= MIN_REPEAT_TOKENS and all(tokens[i] == tokens[i - period] for i in range(period, n)):
            return tokens[:period]
    return tokens


class SharedWhisperSTTService(SegmentedSTTService):
    """pipecat's segmented STT (transcribe each VAD-delimited segment) over a model shared by all lessons.

    pipecat's WhisperSTTService loads its own model per instance; here the lesson only holds a reference.
    Transcription starts at the VAD's first pause, while smart-turn is still deciding if the turn is over.
    """

    def __init__(
        self,
        *,
        model: WhisperModel,
        executor: Executor,
        options: WhisperOptions,
        on_segment: OnSegment | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            settings=STTSettings(model="whisper", language=options.language),
            # Whisper pads its own window; pipecat's default 0.5 s of extra silence only costs decode time.
            trailing_silence_secs=0.2,
            # Only a fallback for turn detection: every transcript here is final, which ends the wait.
            ttfs_p99_latency=1.0,
            **kwargs,  # type: ignore[arg-type]
        )
        self._model = model
        self._executor = executor
        self._options = options
        self._on_segment = on_segment

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            text = await loop.run_in_executor(self._executor, transcribe_pcm, self._model, audio, self._options)
        except Exception as exc:
            log.exception("voice: transcription failed")
            yield ErrorFrame(error=f"transcription failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if not text:
            return
        log.debug(
            "voice: heard %r (%.2f s of audio in %.3f s)", text, len(audio) / 32000, time.perf_counter() - started
        )
        if self._on_segment is not None:
            await self._on_segment(text)
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language(self._options.language))


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    OnSegment = Callable[[str], Awaitable[None]]
