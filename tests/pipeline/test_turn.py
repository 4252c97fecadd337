"""The lesson's VAD: Silero over the shared session, skipping the model for audio too quiet to be speech."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pipecat.audio.utils import calculate_audio_volume
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from server.pipeline.models import SharedModels
from server.pipeline.turn import SharedSileroVADAnalyzer, loudness_upper_bound

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
