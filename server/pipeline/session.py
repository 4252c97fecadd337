"""One live lesson's lifecycle around its pipeline: the events it sends, its clocks, its stops and its record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pipecat.frames.frames import EndFrame, ErrorFrame, OutputTransportMessageFrame
from pipecat.observers.user_bot_latency_observer import LatencyBreakdown
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_response_universal import (
    AssistantTurnStoppedMessage,
    UserTurnStoppedMessage,
)
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.workers.runner import WorkerRunner

from server.pipeline.build import LessonPipeline, PipelineHooks, build_lesson_pipeline
from server.pipeline.events import (
    Message,
    error_message,
    silence_warning_message,
    speech_message,
    status_message,
    transcript_message,
)
from server.pipeline.models import SharedModels
from server.pipeline.phrases import phrase_frames

if TYPE_CHECKING:
    from server.lesson_brief import LessonBrief
    from server.lesson_recorder import LessonRecorder
    from server.pipeline.language_model import LanguageModel
    from server.settings import VoiceSettings

log = logging.getLogger(__name__)

# A goodbye never takes longer than this to be spoken before the pipeline is cut.
FAREWELL_TIMEOUT_SECS = 20.0


# What a learner is told when the tutor's replies fail (the operator's hint goes to the log: language_model.py).
LEARNER_LLM_FAILED = "The tutor cannot answer right now. Please try again in a little while."


class LessonSession:
    """A lesson's pipeline, peer connection and timers; ends itself and tells its recorder why."""

    def __init__(
        self,
        *,
        brief: LessonBrief,
        connection: SmallWebRTCConnection,
        models: SharedModels,
        settings: VoiceSettings,
        language_model: LanguageModel,
        recorder: LessonRecorder,
        on_finished: Callable[[LessonSession], Awaitable[None]],
    ) -> None:
        self.brief = brief
        self.connection = connection
        self.ended_reason: str | None = None
        self._models = models
        self._settings = settings
        self._language_model = language_model
        self._recorder = recorder
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
        self._lesson: LessonPipeline | None = None
        self._persist_transcript = True
        self._record_end_when_finished = False

    @property
    def lesson_id(self) -> int:
        return self.brief.lesson_id

    @property
    def learner_id(self) -> int:
        return self.brief.learner_id

    @property
    def _worker(self) -> PipelineWorker | None:
        return self._lesson.worker if self._lesson is not None else None

    # -- the pipeline and its events --------------------------------------------------------------------

    def build(self) -> PipelineWorker:
        """Build the lesson's pipeline (build.py) and listen to its events; cheap (no model is loaded here)."""
        hooks = PipelineHooks(
            on_user_segment=self._on_user_segment,
            on_stage_error=self._on_stage_error,
            on_speech=self.on_speech,
            on_caption=lambda text: self.send(transcript_message("assistant", text, final=False)),
            screening=self._recorder.screening,
            materials=self._recorder.materials,
        )
        model = self._language_model
        built = build_lesson_pipeline(
            self.brief, self.connection, self._settings, self._models, model.client, model.model_name, hooks
        )
        self._lesson = built
        brief, worker = self.brief, built.worker

        @built.transport.event_handler("on_client_connected")
        async def on_connected(_transport: Any, _client: Any) -> None:
            self._connected.set()
            self._connect_settled.set()
            self._last_activity = time.monotonic()
            self.send(status_message("in-progress"))
            await worker.queue_frames(phrase_frames(brief.greeting))

        @built.transport.event_handler("on_client_disconnected")
        async def on_disconnected(_transport: Any, _client: Any) -> None:
            if self.ended_reason is None:
                await self.end(self._disconnect_reason)
            elif self._runner is not None:
                await self._runner.cancel("the learner left during the farewell")

        @self.connection.event_handler("failed")
        async def on_failed(_connection: Any) -> None:
            self._disconnect_reason = "customer-disconnected"
            self._connect_settled.set()  # a lesson whose ICE failed gives its slot back at once

        @built.user_aggregator.event_handler("on_user_turn_stopped")
        async def on_user_turn(_aggregator: Any, _strategy: Any, message: UserTurnStoppedMessage) -> None:
            if message.content and message.content.strip():
                self._final("user", message.content.strip())

        @built.assistant_aggregator.event_handler("on_assistant_turn_stopped")
        async def on_assistant_turn(_aggregator: Any, message: AssistantTurnStoppedMessage) -> None:
            text = (message.content or "").strip()
            if text:
                if text != brief.apology:
                    self._llm_failures = 0
                # The passages the model was given for the turn this line answers, once.
                sources = built.passages.take_sources() if built.passages is not None else []
                self._final("assistant", text, sources)

        @worker.event_handler("on_pipeline_error")
        async def on_error(_worker: Any, frame: ErrorFrame) -> None:
            if frame.processor is built.llm:
                await self._on_llm_failure(frame)
            else:
                log.warning("voice: lesson %s: %s", brief.lesson_id, frame.error)

        if built.latency is not None:

            @built.latency.event_handler("on_latency_breakdown")
            async def on_latency(_observer: Any, breakdown: LatencyBreakdown) -> None:
                parts = ", ".join(f"{c.label} {c.duration_secs:.2f}" for c in breakdown.contributions)
                log.info("voice: lesson %s: reply in %.2f s (%s)", brief.lesson_id, breakdown.total_secs, parts)

        return worker

    async def start(self) -> None:
        """Start the pipeline and the lesson's timers in the background."""
        worker = self.build()
        self._runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await self._runner.add_workers(worker)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"lesson-{self.lesson_id}"),
            asyncio.create_task(self._write_loop(), name=f"lesson-{self.lesson_id}-writes"),
            asyncio.create_task(self._watch(), name=f"lesson-{self.lesson_id}-timers"),
        ]
        # An embedded model reads the prompt while the learner connects and hears the greeting.
        self._language_model.warm(self.brief.system_prompt, self.brief.greeting)

    async def _run(self) -> None:
        assert self._runner is not None
        try:
            await self._runner.run()
        except Exception:
            log.exception("voice: lesson %s: pipeline crashed", self.lesson_id)
        finally:
            if self.ended_reason is None:
                # The pipeline stopped without anyone deciding to end the lesson: record it.
                self.ended_reason = "pipeline-error"
                self._queue_write("end", self._recorder.on_ended, "pipeline-error")
            elif self._record_end_when_finished:
                self._queue_write("end", self._recorder.on_ended, self.ended_reason)
            self._writes.put_nowait(None)
            self._finished.set()
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
            await self._on_finished(self)

    def send(self, message: Message) -> None:
        """Send one Vapi-shaped event on the data channel (queued by the connection until it opens)."""
        try:
            self.connection.send_app_message(message)
        except Exception as exc:  # a closing data channel must not take the pipeline down
            log.debug("voice: lesson %s: event not sent (%s)", self.lesson_id, exc)

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

    def _final(self, role: Literal["user", "assistant"], text: str, sources: Sequence[Mapping[str, Any]] = ()) -> None:
        """A finished utterance: to the page at once, and to the recorder in the order things were said."""
        self.send(transcript_message(role, text, final=True, sources=sources))
        if self._persist_transcript:
            self._queue_write("transcript", self._recorder.on_utterance, role, text, sources)

    async def _on_llm_failure(self, frame: ErrorFrame) -> None:
        self._llm_failures += 1
        detail = str(frame.exception or frame.error)
        log.warning("voice: lesson %s: the language model failed (%s)", self.lesson_id, detail)
        self._language_model.report_failure()
        self.send(error_message("llm-unavailable", LEARNER_LLM_FAILED))
        usable = self._lesson is not None and self._lesson.llm.is_usable
        if not usable or self._llm_failures >= self._settings.llm_failures_before_end:
            await self.end("llm-unavailable", farewell=self.brief.apology)
            return
        if self._worker is not None:
            # Through the assistant aggregator like any reply: shown and stored when it is spoken.
            await self._worker.queue_frames(phrase_frames(self.brief.apology))

    # -- ending ---------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def end(self, reason: str, *, farewell: str | None = None, record: bool = True) -> None:
        """End the lesson once: say `farewell` if given, tell the page why, close the pipeline, record the end.

        Without a farewell the end is recorded before this returns (a hang-up answers with the ended lesson);
        with one, once the farewell has been said, so the recorded transcript and length include it.
        `record=False` closes the pipeline without ending the recorded lesson (a reconnect replaced it).
        """
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        log.info("voice: lesson %s ends: %s", self.lesson_id, reason)
        if not record:
            self._persist_transcript = False
        worker, runner = self._worker, self._runner
        if farewell and worker is not None and self._connected.is_set() and not self.finished:
            self._record_end_when_finished = record
            # Said to the end even if the learner talks over it, then the status, then the pipeline stops.
            status = OutputTransportMessageFrame(message=status_message("ended", reason))
            status.interruptible = False
            await worker.queue_frames([*phrase_frames(farewell, interruptible=False), status, EndFrame()])
            self._tasks.append(asyncio.create_task(self._cancel_after(FAREWELL_TIMEOUT_SECS)))
            return
        recorded = self._queue_write("end", self._recorder.on_ended, reason) if record else None
        self.send(status_message("ended", reason))
        if runner is not None:
            await runner.cancel(reason)
        if recorded is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(recorded), timeout=10)

    async def _cancel_after(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout=delay)
        if not self.finished and self._runner is not None:
            await self._runner.cancel("farewell took too long")

    async def wait_finished(self, within: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout=within)

    async def _watch(self) -> None:
        """The lesson's clocks: connect timeout, its length (the brief's time left), learner silence."""
        settings = self._settings
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connect_settled.wait(), timeout=settings.connect_timeout_secs)
        if not self._connected.is_set():
            # Ended now, so the slot stops counting towards the live-lesson limit (VoiceService.live_lessons).
            await self.end("customer-disconnected")
            return
        # From when the lesson started, not from now: a reconnect goes on with the time the lesson has left.
        deadline = time.monotonic() + self.brief.seconds_left()
        while not self.finished and self.ended_reason is None:
            now = time.monotonic()
            if now >= deadline:
                await self.end("exceeded-max-duration", farewell=self.brief.goodbye)
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

    # -- the record -------------------------------------------------------------------------------------

    def _queue_write(self, what: str, op: Callable[..., Awaitable[None]], *args: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            try:
                await op(*args)
                done.set_result(None)
            except Exception as exc:
                log.exception("voice: lesson %s: recording its %s failed", self.lesson_id, what)
                done.set_exception(exc)
                done.exception()  # retrieved here so an unawaited failure is not reported twice

        self._writes.put_nowait(run)
        return done

    async def _write_loop(self) -> None:
        """One writer per lesson keeps the record in the order things were said."""
        while True:
            op = await self._writes.get()
            if op is None:
                return
            await op()

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
