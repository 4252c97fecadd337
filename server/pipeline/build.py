"""build_lesson_pipeline(): one lesson's pipecat pipeline, its stages in the order the audio flows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openai import AsyncOpenAI
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    LLMFullResponseEndFrame,
    OutputAudioRawFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMContextAggregatorPair,
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy, VADUserTurnStartStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from server.pipeline.materials import AddPassages, Retrieve
from server.pipeline.phrases import sentences
from server.pipeline.screening import Screening, ScreenLearnerTurns, ScreenTutorReplies, aggregator_like
from server.pipeline.socratic import AnswerGuard, guard_answers
from server.pipeline.stages import OnStageError, make_stt, make_tts
from server.pipeline.turn import QuestionAwareTurnStop, SharedSileroVADAnalyzer, SharedSmartTurnAnalyzer
from server.pipeline.webrtc import LessonTransport

if TYPE_CHECKING:
    from server.lesson_brief import LessonBrief
    from server.pipeline.models import SharedModels
    from server.settings import TurnSettings, VoiceSettings

OUT_SAMPLE_RATE = 24000


@dataclass(frozen=True)
class PipelineHooks:
    """What the pipeline reports as it runs; the lesson's session decides what each means."""

    on_user_segment: Callable[[str], Awaitable[None]]  # a stretch of the learner's speech, transcribed
    on_stage_error: OnStageError  # a hosted STT or TTS call failed
    on_speech: Callable[[str, bool], None]  # (role, started): someone started or stopped speaking
    on_caption: Callable[[str], None]  # what the tutor has said so far of its current line
    screening: Screening | None = None  # the safety checks and where their findings go; None: not screened
    materials: Retrieve | None = None  # the teacher's passages for what the learner said; None: none


@dataclass(frozen=True)
class LessonPipeline:
    """The built pipeline, and the parts of it whose events the session listens to."""

    worker: PipelineWorker
    transport: LessonTransport
    user_aggregator: LLMUserAggregator
    assistant_aggregator: LLMAssistantAggregator
    llm: OpenAILLMService
    latency: UserBotLatencyObserver | None
    passages: AddPassages | None = None  # the sources of what the model was last given (materials.py)


def build_lesson_pipeline(
    brief: LessonBrief,
    connection: SmallWebRTCConnection,
    settings: VoiceSettings,
    models: SharedModels,
    llm_client: AsyncOpenAI,
    llm_model: str,
    hooks: PipelineHooks,
) -> LessonPipeline:
    """The lesson's pipeline around the shared models; cheap (no model is loaded), and nothing starts here."""
    transport = LessonTransport(
        connection,
        TransportParams(audio_in_enabled=True, audio_out_enabled=True),
        input_jitter_ms=settings.input_jitter_ms,
        packet_ms=settings.packet_ms,
    )
    # Local faster-whisper or a hosted OpenAI-compatible service, as configured (stages.py).
    stt = make_stt(settings, models, on_segment=hooks.on_user_segment, on_error=hooks.on_stage_error)
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        LLMContext(), user_params=_turn_taking(settings.turn, models)
    )
    llm = SharedClientLLMService(
        client=llm_client,
        settings=OpenAILLMService.Settings(
            model=llm_model,
            system_instruction=brief.system_prompt,
            temperature=settings.llm.temperature,
            max_tokens=settings.llm.max_tokens,
        ),
    )
    fixed_phrases: tuple[str, ...] = (brief.greeting, brief.goodbye, brief.apology, settings.silence_prompt_message)
    if hooks.screening is not None:
        fixed_phrases += (brief.redirect, brief.support)
    screening = hooks.screening
    if brief.teaching == "socratic":
        # The same screening stage also keeps a socratic tutor from saying the answer to the learner's sum.
        screening = guard_answers(screening, AnswerGuard(brief.guiding_question))
    tts = make_tts(
        settings,
        models,
        brief.voice,
        brief.style,
        on_error=hooks.on_stage_error,
        fixed_phrases=[sentence for phrase in fixed_phrases for sentence in sentences(phrase)],
    )

    passages = AddPassages(hooks.materials)
    pipeline = Pipeline(
        [
            transport.input(),  # learner's microphone (Opus -> 16 kHz PCM)
            stt,  # each VAD-delimited segment -> text, started at the first pause
            user_aggregator,  # VAD + smart-turn decide the turn is over -> context
            DropLearnerAudio(),
            ScreenLearnerTurns(screening, brief.support),  # a turn flagged high: the support message
            passages,  # the teacher's passages for what the learner said -> context
            llm,  # streamed reply from the OpenAI-compatible endpoint or the embedded model
            ScreenTutorReplies(screening, brief.redirect, aggregator_like(tts)),  # flagged: the redirect
            tts,  # piper, sentence by sentence
            transport.output(),  # tutor's voice to the learner
            SpeechEvents(brief.lesson_id, hooks.on_speech, hooks.on_caption),  # who speaks, live captions
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
    return LessonPipeline(worker, transport, user_aggregator, assistant_aggregator, llm, latency, passages)


def _turn_taking(turn: TurnSettings, models: SharedModels) -> LLMUserAggregatorParams:
    """Silero VAD hears speech start (barge-in included); smart-turn, told about questions, hears it end."""
    vad = SharedSileroVADAnalyzer(
        session=models.silero,
        executor=models.compute.vad_executor,
        params=VADParams(confidence=turn.vad_confidence, start_secs=turn.vad_start_secs, stop_secs=turn.vad_stop_secs),
    )
    smart_turn = SharedSmartTurnAnalyzer(
        session=models.smart_turn,
        executor=models.compute.turn_executor,
        params=SmartTurnParams(stop_secs=turn.max_pause_secs),
    )
    return LLMUserAggregatorParams(
        vad_analyzer=vad,
        user_turn_strategies=UserTurnStrategies(
            start=[
                VADUserTurnStartStrategy(enable_interruptions=turn.allow_interruptions),
                TranscriptionUserTurnStartStrategy(enable_interruptions=turn.allow_interruptions),
            ],
            stop=[QuestionAwareTurnStop(turn_analyzer=smart_turn, question_pause_secs=turn.question_pause_secs)],
        ),
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

    def __init__(
        self, lesson_id: int, on_speech: Callable[[str, bool], None], on_caption: Callable[[str], None]
    ) -> None:
        super().__init__(name=f"lesson-{lesson_id}-events")
        self._on_speech = on_speech
        self._on_caption = on_caption
        self._spoken = ""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStartedSpeakingFrame):
                self._on_speech("user", True)
            elif isinstance(frame, UserStoppedSpeakingFrame):
                self._on_speech("user", False)
            elif isinstance(frame, BotStartedSpeakingFrame):
                self._on_speech("assistant", True)
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self._on_speech("assistant", False)
            elif isinstance(frame, TTSTextFrame) and frame.text.strip():
                # TTSTextFrames leave the output transport as their audio plays: a live caption.
                self._spoken = f"{self._spoken} {frame.text.strip()}".strip()
                self._on_caption(self._spoken)
            elif isinstance(frame, OutputAudioRawFrame):
                return  # already played; the assistant aggregator has no use for it
            elif isinstance(frame, (LLMFullResponseEndFrame, LLMAssistantPushAggregationFrame, InterruptionFrame)):
                # Where the assistant aggregator ends the tutor's turn. Not at BotStartedSpeaking: the voice
                # pausing for its next words (a stall) is still the same line.
                self._spoken = ""
        await self.push_frame(frame, direction)
