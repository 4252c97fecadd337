"""One live lesson: its pipecat pipeline (built in audio order), its data-channel events and its stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from openai import AsyncOpenAI
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    TTSSpeakFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.user_bot_latency_observer import LatencyBreakdown, UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    AssistantTurnStoppedMessage,
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
    UserTurnStoppedMessage,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy, VADUserTurnStartStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from server.pipeline.models import SharedModels
from server.pipeline.stages import make_stt, make_tts
from server.pipeline.transport import LessonTransport
from server.pipeline.turn import QuestionAwareTurnStop, SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer

if TYPE_CHECKING:
    from server.lessons import LiveLesson
    from server.settings import VoiceSettings
    from server.store.db import Database

log = logging.getLogger(__name__)

Message = dict[str, Any]
# A goodbye never takes longer than this to be spoken before the pipeline is cut.
FAREWELL_TIMEOUT_SECS = 20.0
OUT_SAMPLE_RATE = 24000


@dataclass(frozen=True)
class LessonPlan:
    """What the companion decides about a lesson: what the tutor says, how it sounds and how long it lasts."""

    lesson_id: int
    learner_id: int
    system_prompt: str
    first_message: str
    goodbye_message: str
    apology_message: str
    voice: str
    style: str
    max_duration_secs: float
    started_at: datetime | None


def plan_lesson(lesson: LiveLesson, settings: VoiceSettings) -> LessonPlan:
    """Turn a live lesson's companion into the prompt, greeting, voice and time limit of its pipeline."""
    companion = lesson.companion
    fields = {
        "subject": companion.subject,
        "topic": companion.topic,
        "style": companion.style,
        "name": companion.name,
    }
    duration = float(companion.duration) * 60.0
    if settings.max_lesson_secs:
        duration = min(duration, settings.max_lesson_secs)
    return LessonPlan(
        lesson_id=lesson.lesson_id,
        learner_id=lesson.learner_id,
        system_prompt=settings.system_prompt.format(**fields),
        first_message=settings.first_message.format(**fields),
        goodbye_message=settings.goodbye_message.format(**fields),
        apology_message=settings.apology_message,
        voice=companion.voice,
        style=companion.style,
        max_duration_secs=duration,
        started_at=getattr(lesson, "started_at", None),
    )


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


def transcript_message(role: str, text: str, final: bool) -> Message:
    return {
        "type": "transcript",
        "role": role,
        "transcriptType": "final" if final else "partial",
        "transcript": text,
    }


def speech_message(role: str, started: bool) -> Message:
    return {"type": "speech-update", "status": "started" if started else "stopped", "role": role}


def status_message(status: str, ended_reason: str | None = None) -> Message:
    message: Message = {"type": "status-update", "status": status}
    if ended_reason:
        message["endedReason"] = ended_reason
    return message


def error_message(code: str, text: str) -> Message:
    return {"type": "error", "error": {"code": code, "message": text}}


def silence_warning_message(seconds_left: float) -> Message:
    """Not one of Vapi's types (its SDK passes unknown ones on to the page as they are)."""
    return {"type": "silence-warning", "secondsLeft": math.ceil(seconds_left)}


def llm_unreachable_hint(base_url: str, model: str) -> str:
    return (
        f"No LLM answered at {base_url} (model {model!r}). Start one there (e.g. `ollama serve` and "
        f"`ollama pull {model}`) or point the server at another OpenAI-compatible endpoint with "
        "voice.llm.base_url / TUTOR_VOICE__LLM__BASE_URL and voice.llm.model / TUTOR_VOICE__LLM__MODEL."
    )


class SharedClientLLMService(OpenAILLMService):
    """pipecat's OpenAI LLM service on the process's one AsyncOpenAI client (none built per lesson)."""

    def __init__(self, *, client: AsyncOpenAI, **kwargs: Any) -> None:
        self._shared_client = client
        super().__init__(**kwargs)

    def create_client(self, *args: Any, **kwargs: Any) -> AsyncOpenAI:
        return self._shared_client


class DropLearnerAudio(FrameProcessor):
    """Stops the learner's audio after the user aggregator: nothing further down uses it, and each 20 ms
    frame would otherwise visit five more processors (most of an idle lesson's CPU)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not (isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM):
            await self.push_frame(frame, direction)


class SpeechEvents(FrameProcessor):
    """Sits after the output transport: reports who is speaking and what the tutor has said so far."""

    def __init__(self, session: LessonSession) -> None:
        super().__init__(name=f"lesson-{session.plan.lesson_id}-events")
        self._session = session
        self._spoken = ""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStartedSpeakingFrame):
                self._session.on_speech("user", True)
            elif isinstance(frame, UserStoppedSpeakingFrame):
                self._session.on_speech("user", False)
            elif isinstance(frame, BotStartedSpeakingFrame):
                self._session.on_speech("assistant", True)
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._session.on_speech("assistant", False)
            elif isinstance(frame, TTSTextFrame) and frame.text.strip():
                # TTSTextFrames leave the output transport as their audio plays: a live caption.
                self._spoken = f"{self._spoken} {frame.text.strip()}".strip()
                self._session.send(transcript_message("assistant", self._spoken, final=False))
            elif isinstance(frame, OutputAudioRawFrame):
                return  # already played; the assistant aggregator has no use for it
            elif isinstance(frame, (LLMFullResponseEndFrame, LLMAssistantPushAggregationFrame, InterruptionFrame)):
                # Where the assistant aggregator ends the tutor's turn. Not at BotStartedSpeaking: the voice
                # pausing for its next words (a stall) is still the same line.
                self._spoken = ""
        await self.push_frame(frame, direction)


class LessonSession:
    """A lesson's pipeline, peer connection and timers; ends itself and records why."""

    def __init__(
        self,
        *,
        plan: LessonPlan,
        connection: SmallWebRTCConnection,
        models: SharedModels,
        settings: VoiceSettings,
        db: Database,
        llm_client: AsyncOpenAI,
        on_finished: Callable[[LessonSession], Awaitable[None]],
    ) -> None:
        self.plan = plan
        self.connection = connection
        self.ended_reason: str | None = None
        self._models = models
        self._settings = settings
        self._db = db
        self._llm_client = llm_client
        self._on_finished = on_finished
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._connect_settled = asyncio.Event()  # connected, or failed before it could
        self._speaking: set[str] = set()
        self._last_activity = time.monotonic()
        self._learner_active_at = self._last_activity
        self._silence_warned_at: float | None = None
        self._llm_failures = 0
        self._disconnect_reason = "customer-ended-call"
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: WorkerRunner | None = None
        self._worker: PipelineWorker | None = None
        self._llm: OpenAILLMService | None = None
        self._persist_transcript = True
        self._store_end_when_finished = False

    # -- the pipeline ---------------------------------------------------------------------------------

    def build(self) -> PipelineWorker:
        """Build the lesson's pipeline around the shared models; cheap (no model is loaded here)."""
        settings, models, plan = self._settings, self._models, self.plan
        turn = settings.turn

        transport = LessonTransport(
            self.connection,
            TransportParams(audio_in_enabled=True, audio_out_enabled=True),
            input_jitter_ms=settings.input_jitter_ms,
            packet_ms=settings.packet_ms,
        )
        # Local faster-whisper or a hosted OpenAI-compatible service, as configured (stages.py).
        stt = make_stt(settings, models, on_segment=self._on_user_segment, on_error=self._on_stage_error)
        vad = SharedSileroVADAnalyzer(
            session=models.silero,
            executor=models.vad_executor,
            params=VADParams(
                confidence=turn.vad_confidence, start_secs=turn.vad_start_secs, stop_secs=turn.vad_stop_secs
            ),
        )
        smart_turn = SharedSmartTurnAnalyzer(
            session=models.smart_turn,
            executor=models.turn_executor,
            params=SmartTurnParams(stop_secs=turn.max_pause_secs),
        )
        context = LLMContext()
        user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
            context,
            user_params=LLMUserAggregatorParams(
                vad_analyzer=vad,
                user_turn_strategies=UserTurnStrategies(
                    start=[
                        VADUserTurnStartStrategy(enable_interruptions=turn.allow_interruptions),
                        TranscriptionUserTurnStartStrategy(enable_interruptions=turn.allow_interruptions),
                    ],
                    stop=[
                        QuestionAwareTurnStop(turn_analyzer=smart_turn, question_pause_secs=turn.question_pause_secs)
                    ],
                ),
            ),
        )
        llm = SharedClientLLMService(
            client=self._llm_client,
            settings=OpenAILLMService.Settings(
                model=settings.llm.model,
                system_instruction=plan.system_prompt,
                temperature=settings.llm.temperature,
                max_tokens=settings.llm.max_tokens,
            ),
        )
        tts = make_tts(
            settings,
            models,
            plan.voice,
            plan.style,
            on_error=self._on_stage_error,
            fixed_phrases=[
                sentence
                for phrase in (
                    plan.first_message,
                    plan.goodbye_message,
                    plan.apology_message,
                    settings.silence_prompt_message,
                )
                for sentence in sentences(phrase)
            ],
        )
        self._llm = llm

        pipeline = Pipeline(
            [
                transport.input(),  # learner's microphone (Opus -> 16 kHz PCM)
                stt,  # each VAD-delimited segment -> text, started at the first pause
                user_aggregator,  # VAD + smart-turn decide the turn is over -> context
                DropLearnerAudio(),
                llm,  # streamed reply from the OpenAI-compatible endpoint
                tts,  # piper, sentence by sentence
                transport.output(),  # tutor's voice to the learner
                SpeechEvents(self),  # who speaks, live captions
                assistant_aggregator,  # what the tutor actually said -> context
            ]
        )
        latency = UserBotLatencyObserver() if settings.log_latency else None
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_out_sample_rate=OUT_SAMPLE_RATE, enable_metrics=settings.log_latency),
            enable_rtvi=False,  # the page speaks our Vapi-shaped events, not RTVI
            idle_timeout_secs=None,  # our own silence timer ends idle lessons, with a reason
            check_dangling_tasks=False,
            enable_turn_tracking=False,  # OpenTelemetry turn spans: not used, and it watches every frame
            observers=[latency] if latency is not None else [],
        )
        self._worker = worker

        @transport.event_handler("on_client_connected")
        async def on_connected(_transport: Any, _client: Any) -> None:
            self._connected.set()
            self._connect_settled.set()
            self._last_activity = time.monotonic()
            self.send(status_message("in-progress"))
            await worker.queue_frames(phrase_frames(plan.first_message))

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(_transport: Any, _client: Any) -> None:
            if self.ended_reason is None:
                await self.end(self._disconnect_reason)
            elif self._runner is not None:
                await self._runner.cancel("the learner left during the farewell")

        @self.connection.event_handler("failed")
        async def on_failed(_connection: Any) -> None:
            self._disconnect_reason = "customer-disconnected"
            self._connect_settled.set()  # a lesson whose ICE failed gives its slot back at once

        @user_aggregator.event_handler("on_user_turn_stopped")
        async def on_user_turn(_aggregator: Any, _strategy: Any, message: UserTurnStoppedMessage) -> None:
            if message.content and message.content.strip():
                self._final("user", message.content.strip())

        @assistant_aggregator.event_handler("on_assistant_turn_stopped")
        async def on_assistant_turn(_aggregator: Any, message: AssistantTurnStoppedMessage) -> None:
            text = (message.content or "").strip()
            if text:
                if text != plan.apology_message:
                    self._llm_failures = 0
                self._final("assistant", text)

        @worker.event_handler("on_pipeline_error")
        async def on_error(_worker: Any, frame: ErrorFrame) -> None:
            if frame.processor is llm:
                await self._on_llm_failure(frame)
            else:
                log.warning("voice: lesson %s: %s", plan.lesson_id, frame.error)

        if latency is not None:

            @latency.event_handler("on_latency_breakdown")
            async def on_latency(_observer: Any, breakdown: LatencyBreakdown) -> None:
                parts = ", ".join(f"{c.label} {c.duration_secs:.2f}" for c in breakdown.contributions)
                log.info("voice: lesson %s: reply in %.2f s (%s)", plan.lesson_id, breakdown.total_secs, parts)

        return worker

    async def start(self) -> None:
        """Start the pipeline and the lesson's timers in the background."""
        worker = self.build()
        self._runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await self._runner.add_workers(worker)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"lesson-{self.plan.lesson_id}"),
            asyncio.create_task(self._write_loop(), name=f"lesson-{self.plan.lesson_id}-writes"),
            asyncio.create_task(self._watch(), name=f"lesson-{self.plan.lesson_id}-timers"),
        ]

    async def _run(self) -> None:
        assert self._runner is not None
        try:
            await self._runner.run()
        except Exception:
            log.exception("voice: lesson %s: pipeline crashed", self.plan.lesson_id)
        finally:
            if self.ended_reason is None:
                # The pipeline stopped without anyone deciding to end the lesson: record it.
                self.ended_reason = "pipeline-error"
                self._queue_write(self._store_end, "pipeline-error")
            elif self._store_end_when_finished:
                self._queue_write(self._store_end, self.ended_reason)
            self._writes.put_nowait(None)
            self._finished.set()
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
            await self._on_finished(self)

    # -- events -------------------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send one Vapi-shaped event on the data channel (queued by the connection until it opens)."""
        try:
            self.connection.send_app_message(message)
        except Exception as exc:  # a closing data channel must not take the pipeline down
            log.debug("voice: lesson %s: event not sent (%s)", self.plan.lesson_id, exc)

    @property
    def learner_id(self) -> int:
        return self.plan.learner_id

    def on_speech(self, role: str, started: bool) -> None:
        self._last_activity = time.monotonic()
        if role == "user":
            self._learner_active_at = self._last_activity
        if started:
            self._speaking.add(role)
        else:
            self._speaking.discard(role)
        self.send(speech_message(role, started))

    def _on_stage_error(self, code: str, message: str) -> None:
        """A hosted STT/TTS call failed: the page shows why; the lesson goes on."""
        self.send(error_message(code, message))

    async def _on_user_segment(self, text: str) -> None:
        self._last_activity = self._learner_active_at = time.monotonic()
        self.send(transcript_message("user", text, final=False))

    def _final(self, role: Literal["user", "assistant"], text: str) -> None:
        """A finished utterance: to the page at once, and appended to the stored transcript in order."""
        self.send(transcript_message(role, text, final=True))
        if self._persist_transcript:
            self._queue_write(self._store_transcript, role, text)

    async def _on_llm_failure(self, frame: ErrorFrame) -> None:
        self._llm_failures += 1
        llm = self._settings.llm
        detail = str(frame.exception or frame.error)
        log.warning("voice: lesson %s: LLM failed (%s)", self.plan.lesson_id, detail)
        self.send(error_message("llm-unavailable", f"{llm_unreachable_hint(llm.base_url, llm.model)} ({detail})"))
        usable = self._llm is not None and self._llm.is_usable
        if not usable or self._llm_failures >= self._settings.llm_failures_before_end:
            await self.end("llm-unavailable", farewell=self.plan.apology_message)
            return
        if self._worker is not None:
            # Through the assistant aggregator like any reply: shown and stored when it is spoken.
            await self._worker.queue_frames(phrase_frames(self.plan.apology_message))

    # -- ending ---------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def end(self, reason: str, *, farewell: str | None = None, record: bool = True) -> None:
        """End the lesson once: say `farewell` if given, tell the page why, close the pipeline, store the end.

        Without a farewell the end is stored before this returns (a hang-up answers with the ended lesson);
        with one, once the farewell has been said, so the stored transcript and length include it.
        `record=False` closes the pipeline without ending the stored lesson (a reconnect replaced it).
        """
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        log.info("voice: lesson %s ends: %s", self.plan.lesson_id, reason)
        if not record:
            self._persist_transcript = False
        worker, runner = self._worker, self._runner
        if farewell and worker is not None and self._connected.is_set() and not self.finished:
            self._store_end_when_finished = record
            # Said to the end even if the learner talks over it, then the status, then the pipeline stops.
            status = OutputTransportMessageFrame(message=status_message("ended", reason))
            status.interruptible = False
            await worker.queue_frames([*phrase_frames(farewell, interruptible=False), status, EndFrame()])
            self._tasks.append(asyncio.create_task(self._cancel_after(FAREWELL_TIMEOUT_SECS)))
            return
        stored = self._queue_write(self._store_end, reason) if record else None
        self.send(status_message("ended", reason))
        if runner is not None:
            await runner.cancel(reason)
        if stored is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(stored), timeout=10)

    async def _cancel_after(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout=delay)
        if not self.finished and self._runner is not None:
            await self._runner.cancel("farewell took too long")

    async def wait_finished(self, within: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout=within)

    async def _watch(self) -> None:
        """The lesson's clocks: connect timeout, duration hard stop, learner silence."""
        settings, plan = self._settings, self.plan
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connect_settled.wait(), timeout=settings.connect_timeout_secs)
        if not self._connected.is_set():
            # Ended now, so the slot stops counting towards the live-lesson limit (VoiceService.live_lessons).
            await self.end("customer-disconnected")
            return
        deadline = time.monotonic() + plan.max_duration_secs
        if plan.started_at is not None and not settings.max_lesson_secs:
            # A reconnect does not reset the clock: the lesson's time counts from when it started.
            started = plan.started_at if plan.started_at.tzinfo else plan.started_at.replace(tzinfo=UTC)
            elapsed = max(0.0, (datetime.now(UTC) - started).total_seconds())
            deadline = time.monotonic() + max(0.0, plan.max_duration_secs - elapsed)
        while not self.finished and self.ended_reason is None:
            now = time.monotonic()
            if now >= deadline:
                await self.end("exceeded-max-duration", farewell=plan.goodbye_message)
                return
            if await self._check_silence(now):
                return
            await asyncio.sleep(min(0.25, max(0.01, deadline - now)))

    async def _check_silence(self, now: float) -> bool:
        """Warn a silent learner once (spoken and on the page), then end the lesson if they stay silent.

        A muted learner is silent to the server too, so they get the same warning. Returns whether it ended.
        """
        settings = self._settings
        lead = settings.silence_warning_lead()
        warned_at = self._silence_warned_at
        if warned_at is not None and self._learner_active_at > warned_at:
            warned_at = self._silence_warned_at = None  # the learner answered: the lesson goes on
        if self._speaking:
            return False  # the clock runs from when both are quiet (a reply, or the check-in itself, is playing)
        if warned_at is None:
            if now - self._last_activity >= settings.silence_timeout_secs - lead:
                self._silence_warned_at = now
                self.send(silence_warning_message(lead))
                if self._worker is not None:
                    await self._worker.queue_frames(phrase_frames(settings.silence_prompt_message))
            return False
        if now - warned_at >= lead:
            await self.end("silence-timed-out")
            return True
        return False

    # -- storage ----------------------------------------------------------------------------------------

    def _queue_write(self, op: Callable[..., Awaitable[None]], *args: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                await op(*args)
                done.set_result(None)
            except Exception as exc:
                log.exception("voice: lesson %s: storing %s failed", self.plan.lesson_id, op.__name__)
                done.set_exception(exc)
                done.exception()  # retrieved here so an unawaited failure is not reported twice

        self._writes.put_nowait(run)
        return done

    async def _write_loop(self) -> None:
        """One writer per lesson keeps the stored transcript in the order things were said."""
        while True:
            op = await self._writes.get()
            if op is None:
                return
            await op()

    async def _store_transcript(self, role: Literal["user", "assistant"], text: str) -> None:
        from server.lessons import append_transcript

        await append_transcript(self._db, self.plan.lesson_id, role, text)

    async def _store_end(self, reason: str) -> None:
        from server.lessons import end_lesson

        await end_lesson(self._db, self.plan.lesson_id, reason)

    async def close(self, within: float = 5.0) -> None:
        """Stop everything now (server shutdown) and wait for the pipeline and the writer to finish."""
        if self.ended_reason is None:
            await self.end("server-shutdown")
        elif self._runner is not None:
            await self._runner.cancel("server shutting down")
        await self.wait_finished(within)
        for task in self._tasks:
            if not task.done():
                try:
                    await asyncio.wait_for(task, timeout=within)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
