"""Speech-to-text on the one shared faster-whisper model: every lesson's utterances, batched on worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from server.pipeline.compute import CpuGate, ThreadStarter, start_threads

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
    audio = _samples(pcm)
    if len(audio) == 0:
        return ""
    if _is_long(audio):
        return _transcribe_long(model, audio, options)
    return transcribe_batch(model, [audio], options)[0]


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def _transcribe_long(model: WhisperModel, audio: np.ndarray, options: WhisperOptions) -> str:
    """Long monologues: faster-whisper's own chunking; the lazy segments are materialized here, in the thread."""
    segments, _ = model.transcribe(
        audio,
        language=options.language,
        beam_size=options.beam_size,
        without_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return " ".join(s.text.strip() for s in segments if s.no_speech_prob < NO_SPEECH_THRESHOLD).strip()


def _is_long(audio: np.ndarray) -> bool:
    return len(audio) / SAMPLE_RATE > MAX_WINDOW_SECS - 1


def window_secs(samples: int) -> float:
    """The encoder window for `samples` of audio: at least MIN_WINDOW_SECS, a second longer than the audio."""
    return float(min(MAX_WINDOW_SECS, max(MIN_WINDOW_SECS, np.ceil(samples / SAMPLE_RATE) + 1.0)))


def transcribe_batch(model: WhisperModel, audios: list[np.ndarray], options: WhisperOptions) -> list[str]:
    """Transcribe several utterances (float32 16 kHz, each under MAX_WINDOW_SECS - 1) in one model call.

    They share the longest one's window. On two cores, 4 utterances in one call cost about 60% of the CPU of 4
    calls: the decoder runs one step for all of them, and its per-step cost hardly grows with the batch.
    """
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    if not audios:
        return []
    window = max(window_secs(len(audio)) for audio in audios)
    size = int(window * SAMPLE_RATE)
    frames = size // model.feature_extractor.hop_length
    features = []
    for audio in audios:
        padded = np.zeros(size, dtype=np.float32)
        padded[: len(audio)] = audio
        features.append(model.feature_extractor(padded)[:, :frames])
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        model.model.is_multilingual,
        task="transcribe",
        language=options.language if model.model.is_multilingual else None,
    )
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    limits = [10 + int(MAX_TOKENS_PER_SEC * len(audio) / SAMPLE_RATE) for audio in audios]
    results = model.model.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(features))),
        [prompt] * len(audios),
        beam_size=options.beam_size,
        max_length=len(prompt) + max(limits),
        suppress_blank=True,
        suppress_tokens=[-1],
        return_no_speech_prob=True,
    )
    texts = []
    for result, limit in zip(results, limits, strict=True):
        if result.no_speech_prob > NO_SPEECH_THRESHOLD:
            texts.append("")
            continue
        # Each utterance keeps its own bound on tokens, whatever the batch's longest allowed.
        tokens = _drop_repeats([t for t in result.sequences_ids[0] if t < tokenizer.eot][:limit])
        texts.append(str(tokenizer.decode(tokens)).strip())
    return texts


def _drop_repeats(tokens: list[int]) -> list[int]:
    """Cut a decoder loop ("A B C A B C A B") back to its first period ("A B C")."""
    n = len(tokens)
    for period in range(MIN_REPEAT_TOKENS, n - MIN_REPEAT_TOKENS + 1):
        if n - period >= MIN_REPEAT_TOKENS and all(tokens[i] == tokens[i - period] for i in range(period, n)):
            return tokens[:period]
    return tokens


# Most utterances a batch takes: past this the encoder (linear in the batch) is nearly all of the cost.
MAX_BATCH = 8


@dataclass(eq=False)  # compared by identity: the audio is an array
class _Request:
    audio: np.ndarray
    options: WhisperOptions
    future: concurrent.futures.Future[str]
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[WhisperOptions, float | None]:
        """Requests with equal keys can share a model call (None: a long monologue, transcribed alone)."""
        return self.options, None if _is_long(self.audio) else window_secs(len(self.audio))


class WhisperBatcher:
    """Transcribes every lesson's utterances on `workers` threads (made by `start_threads`), in batches.

    When a thread comes free it takes every waiting utterance that fits one model call (same options and
    window, at most MAX_BATCH) rather than the oldest alone. Nobody waits for a batch to fill: a lone utterance
    goes at once. When many learners stop talking at the same moment, which in a class they do, the later ones
    wait for one batch rather than a queue of single calls.
    """

    def __init__(
        self,
        model: WhisperModel,
        workers: int = 1,
        max_batch: int = MAX_BATCH,
        gate: CpuGate | None = None,
        start_threads: ThreadStarter = start_threads,
    ) -> None:
        self.model = model
        # Each model call takes a slot of the process's gate (compute.py): a transcription is always urgent.
        self._gate = gate or CpuGate(workers)
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._wake = threading.Condition()
        self._closed = False
        # Model calls made and utterances they carried (utterances / calls is the mean batch).
        self.calls = 0
        self.utterances = 0
        self._threads = start_threads("voice-stt", self._work, max(1, workers))

    async def transcribe(self, pcm: bytes, options: WhisperOptions) -> str:
        """The text of 16 kHz int16 mono PCM ("" for silence); cancelling it drops the request if not yet run."""
        audio = _samples(pcm)
        if len(audio) == 0:
            return ""
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the speech recognizer is shut down")
            self._pending.append(_Request(audio, options, future))
            self._wake.notify()
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop the threads after the batch in hand; requests still waiting are cancelled."""
        with self._wake:
            self._closed = True
            pending, self._pending = self._pending, []
            self._wake.notify_all()
        for request in pending:
            request.future.cancel()

    def _wait_for_work(self) -> bool:
        """Block until an utterance is waiting (True) or the batcher is closed (False)."""
        with self._wake:
            while not self._pending and not self._closed:
                self._wake.wait()
            return not self._closed

    def _next_batch(self) -> list[_Request]:
        """Take what one model call can carry (nothing if another thread took it first)."""
        with self._wake:
            if self._closed or not self._pending:
                return []
            key = self._pending[0].key
            batch = [r for r in self._pending if r.key == key][: 1 if key[1] is None else self._max_batch]
            taken = {id(r) for r in batch}
            self._pending = [r for r in self._pending if id(r) not in taken]
        # A request whose lesson gave up on it (cancelled) is not transcribed.
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    def _transcribe(self, batch: list[_Request]) -> list[str]:
        if batch[0].key[1] is None:
            return [_transcribe_long(self.model, batch[0].audio, batch[0].options)]
        return transcribe_batch(self.model, [r.audio for r in batch], batch[0].options)

    def _work(self) -> None:
        while self._wait_for_work():
            # The batch is taken once a core is free: what arrived while waiting for it rides along.
            with self._gate.slot():
                batch = self._next_batch()
                running = time.perf_counter()
                try:
                    texts = self._transcribe(batch) if batch else []
                except Exception as exc:
                    for request in batch:
                        request.future.set_exception(exc)
                    continue
            if not batch:
                continue
            elapsed = time.perf_counter() - running
            with self._wake:
                self.calls += 1
                self.utterances += len(batch)
            waited = running - min(r.queued_at for r in batch)
            log.debug(
                "voice: transcribed %d utterance(s) in one call in %.3f s, after waiting up to %.3f s",
                len(batch),
                elapsed,
                waited,
            )
            for request, text in zip(batch, texts, strict=True):
                request.future.set_result(text)


class SharedWhisperSTTService(SegmentedSTTService):
    """pipecat's segmented STT (transcribe each VAD-delimited segment) over a model shared by all lessons.

    pipecat's WhisperSTTService loads its own model per instance; here the lesson only holds a reference.
    Transcription starts at the VAD's first pause, while smart-turn is still deciding if the turn is over.
    """

    def __init__(
        self,
        *,
        batcher: WhisperBatcher,
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
        self._batcher = batcher
        self._options = options
        self._on_segment = on_segment

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        started = time.perf_counter()
        try:
            text = await self._batcher.transcribe(audio, self._options)
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
