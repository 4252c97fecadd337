"""The lesson's turn taking: Silero VAD skipping the model for quiet audio, and smart-turn with the transcript."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pytest
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.utils import calculate_audio_volume
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from server.pipeline.models import SharedModels
from server.pipeline.turn import (
    QuestionAwareTurnStop,
    SharedSileroVADAnalyzer,
    SharedSmartTurnAnalyzer,
    is_question,
    loudness_upper_bound,
)

RATE = 16000
FRAME = 320  # 20 ms, as the transport delivers it


def _pcm(samples: np.ndarray) -> bytes:
    return np.clip(samples, -32768, 32767).astype(np.int16).tobytes()


def _noise(samples: int, rms: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, rms, samples)


@pytest.mark.parametrize("hz", [60, 300, 1000, 3000, 6000, 7800])
@pytest.mark.parametrize("amplitude", [20, 200, 2000, 12000])
def test_the_loudness_bound_is_never_below_pipecats_loudness_for_tones(hz: int, amplitude: int) -> None:
    t = np.arange(6400) / RATE
    pcm = _pcm(amplitude * np.sin(2 * np.pi * hz * t))
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    assert loudness_upper_bound(float(np.dot(samples, samples)), 6400) >= calculate_audio_volume(pcm, RATE)


@pytest.mark.parametrize("rms", [3.0, 30.0, 300.0, 3000.0])
def test_the_loudness_bound_is_never_below_pipecats_loudness_for_noise(rms: float) -> None:
    white = _noise(6400, rms)
    hiss = np.diff(_noise(6401, rms, seed=2))  # energy piled up near Nyquist, where K-weighting adds most
    for signal in (white, hiss):
        pcm = _pcm(signal)
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        bound = loudness_upper_bound(float(np.dot(samples, samples)), len(samples))
        volume = calculate_audio_volume(pcm, RATE)
        assert bound >= volume
        if volume > 0:  # (below BS.1770's -70 LUFS gate pipecat reads 0)
            assert bound - volume < 0.06  # within 6 dB: tight enough to be useful


class CountingSession:
    """The shared onnx session, counting the windows it scores."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.calls = 0

    def run(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.session.run(*args, **kwargs)  # type: ignore[attr-defined]


async def _states(vad: object, pcm: np.ndarray) -> list[VADState]:
    raw = _pcm(pcm)
    states = []
    for start in range(0, len(raw), FRAME * 2):
        states.append(await vad.analyze_audio(raw[start : start + FRAME * 2]))  # type: ignore[attr-defined]
    return states


def _speaking_spans(states: list[VADState]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, state in enumerate([*states, VADState.QUIET]):
        if state == VADState.SPEAKING and start is None:
            start = i
        elif state == VADState.QUIET and start is not None:
            spans.append((start, i))
            start = None
    return spans


async def test_the_vad_finds_the_same_speech_as_pipecats_while_skipping_the_model_in_quiet(
    voice_models: SharedModels, speech: Callable[[str], np.ndarray]
) -> None:
    said = speech("Can you tell me about the longest river in Africa?")
    # Digital silence, a quiet room, the question, a pause, the question again over the same room noise.
    room = _noise(RATE * 3 // 2, 8.0)
    audio = np.concatenate([np.zeros(RATE), room, said, np.zeros(RATE), room])
    audio = np.concatenate([audio, said + _noise(len(said), 8.0, seed=3), np.zeros(RATE)])
    params = VADParams(start_secs=0.2, stop_secs=0.2)

    stock = SileroVADAnalyzer(sample_rate=RATE, params=params)
    stock.set_sample_rate(RATE)
    counting = CountingSession(voice_models.silero)
    with ThreadPoolExecutor(1) as pool:
        ours = SharedSileroVADAnalyzer(session=counting, executor=pool, params=params)  # type: ignore[arg-type]
        ours.set_sample_rate(RATE)
        expected = await _states(stock, audio)
        got = await _states(ours, audio)
    await stock.cleanup()

    stock_spans, our_spans = _speaking_spans(expected), _speaking_spans(got)
    assert len(stock_spans) == 2, stock_spans  # both questions are heard
    assert len(our_spans) == len(stock_spans)
    for (s_start, s_end), (o_start, o_end) in zip(stock_spans, our_spans, strict=True):
        # The same speech: the end (what the tutor waits for) to within a 32 ms window; the start may come a
        # little sooner, as Silero meets the speech with the fresh state it is reset to in long quiet.
        assert abs(s_end - o_end) <= 2, (stock_spans, our_spans)
        assert 0 <= s_start - o_start <= 5, (stock_spans, our_spans)
    windows = len(audio) // 512
    speech_windows = 2 * len(said) // 512
    # Silero ran for the speech (and the short loud tail the loudness window carries), not for the quiet.
    assert counting.calls <= speech_windows + 2 * 16
    assert counting.calls < windows / 2


QUESTION = "I think the Amazon carries more water than any other river. Is that right?"
TURN_FRAME = 640  # 40 ms, as the transport delivers it


class _TurnDriver:
    """Feeds one learner turn to the lesson's turn-stop strategy as the pipeline does, on the real smart-turn."""

    def __init__(self, models: SharedModels, question_pause_secs: float) -> None:
        self.analyzer = SharedSmartTurnAnalyzer(
            session=models.smart_turn, executor=models.turn_executor, params=SmartTurnParams(stop_secs=1.0)
        )
        self.strategy = QuestionAwareTurnStop(turn_analyzer=self.analyzer, question_pause_secs=question_pause_secs)
        self.stopped = False

        @self.strategy.event_handler("on_user_turn_stopped")
        async def on_stopped(*_args: Any, **_kwargs: Any) -> None:
            self.stopped = True

    async def __aenter__(self) -> _TurnDriver:
        setup = FrameProcessorSetup(
            clock=SystemClock(),
            task_manager=TaskManager(loop=asyncio.get_running_loop()),
            pipeline_worker=cast(Any, None),
            audio_in_sample_rate=RATE,
        )
        await self.strategy.setup(setup)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.strategy.cleanup()

    async def audio(self, pcm: np.ndarray) -> None:
        data = pcm.astype(np.int16).tobytes()
        for i in range(0, len(data), TURN_FRAME * 2):
            chunk = data[i : i + TURN_FRAME * 2]
            await self.strategy.process_frame(InputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1))
            if self.stopped:
                return

    async def speak(self, pcm: np.ndarray, transcript: str) -> None:
        """Speech, the VAD's 0.2 s of silence before it reports the stop, then the stop and the transcript."""
        await self.strategy.process_frame(VADUserStartedSpeakingFrame(start_secs=0.2))
        await self.audio(np.concatenate([pcm, np.zeros(int(0.2 * RATE), dtype=np.int16)]))
        await self.strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2))
        await self.strategy.process_frame(TranscriptionFrame(transcript, "learner", "now"))

    async def silence(self, secs: float) -> None:
        await self.audio(np.zeros(int(secs * RATE), dtype=np.int16))
        await asyncio.sleep(0.05)  # let the strategy's own tasks run


@pytest.fixture(scope="module")
def question_clip() -> np.ndarray:
    from tests.support.speech import synthesize

    return synthesize(QUESTION, sample_rate=RATE, leading_silence=0.3, trailing_silence=0.0)


async def test_a_question_smart_turn_thinks_unfinished_ends_after_the_short_pause(
    voice_models: SharedModels, question_clip: np.ndarray
) -> None:
    # smart-turn hears this question's falling intonation as an unfinished turn: on its own it waits the whole
    # max pause (1 s) before the tutor may answer.
    async with _TurnDriver(voice_models, question_pause_secs=1.0) as alone:
        await alone.speak(question_clip, QUESTION)
        await alone.silence(0.4)
        assert not alone.stopped, "smart-turn took the question as finished: this test no longer shows anything"
        await alone.silence(0.7)
        assert alone.stopped
    # With the transcript's question mark as a second opinion, the learner waits 0.3 s of silence instead.
    async with _TurnDriver(voice_models, question_pause_secs=0.3) as driver:
        await driver.speak(question_clip, QUESTION)
        await driver.silence(0.4)
        assert driver.stopped


async def test_a_statement_smart_turn_thinks_unfinished_still_gets_the_full_pause(
    voice_models: SharedModels, question_clip: np.ndarray
) -> None:
    # The same audio transcribed without a question mark: smart-turn's verdict stands, the learner may go on.
    statement = QUESTION.replace("?", ",")
    async with _TurnDriver(voice_models, question_pause_secs=0.3) as driver:
        await driver.speak(question_clip, statement)
        await driver.silence(0.4)
        assert not driver.stopped
        await driver.silence(0.7)
        assert driver.stopped


async def test_speaking_again_after_a_question_gives_smart_turn_the_last_word_again(
    voice_models: SharedModels, question_clip: np.ndarray
) -> None:
    # The learner asks, then goes on before the short pause is over: until the new words are transcribed,
    # smart-turn (which hears them as unfinished) decides again, so the learner is not cut off after 0.3 s.
    async with _TurnDriver(voice_models, question_pause_secs=0.3) as driver:
        await driver.speak(question_clip, QUESTION)
        await driver.strategy.process_frame(VADUserStartedSpeakingFrame(start_secs=0.2))
        await driver.audio(np.concatenate([question_clip, np.zeros(int(0.2 * RATE), dtype=np.int16)]))
        await driver.strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2))
        await driver.silence(0.4)
        assert not driver.stopped
        await driver.silence(0.7)
        assert driver.stopped


@pytest.mark.parametrize(
    ("text", "question"),
    [("Is that right?", True), ('He asked "why?"', True), ("Is that right", False), ("It is. Why", False)],
)
def test_is_question(text: str, question: bool) -> None:
    assert is_question(text) is question
