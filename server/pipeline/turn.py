"""Silero VAD and smart-turn v3 analyzers that run on shared onnx sessions and shared thread pools.

pipecat's analyzers each load their own onnx session and start their own thread; per lesson that is
~0.2 s of set-up and tens of MB. The sessions are stateless (state lives in the arrays passed in), so
one session per model serves every lesson.

The VAD also skips the model for audio too quiet to count as speech. pipecat's VAD calls a window speech only
when Silero is confident *and* the smoothed BS.1770 loudness of the last 0.4 s reaches `min_volume`; a learner
is silent most of a lesson (listening, thinking), and for those windows the loudness alone settles it. An upper
bound on that loudness costs one dot product, against ~0.4 ms for Silero plus the loudness meter and two thread
hand-offs, 31 times a second per lesson.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.utils import exp_smoothing
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.audio.volume import VOLUME_WINDOW_SECS
from pipecat.frames.frames import TranscriptionFrame
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy

# BS.1770's K-weighting is a +4 dB high shelf and a high-pass: it can raise a signal's power by at most 4 dB
# (Parseval), so plain power + this bounds the loudness pipecat measures. Half a dB of room for rounding.
K_WEIGHTING_MAX_GAIN_DB = 4.5
# pipecat normalizes loudness from this LUFS range onto 0..1 (pipecat.audio.utils.calculate_audio_volume).
LOUDNESS_FLOOR_LUFS, LOUDNESS_CEILING_LUFS = -110.0, -10.0


def loudness_upper_bound(sum_of_squares: float, samples: int) -> float:
    """An upper bound on pipecat's 0..1 volume of `samples` int16 samples whose squares sum to `sum_of_squares`.

    BS.1770's block loudness is -0.691 + 10 log10(mean square of the K-weighted signal), in full-scale units.
    """
    if sum_of_squares <= 0 or samples <= 0:
        return 0.0
    mean_square = sum_of_squares / samples / (32768.0 * 32768.0)
    lufs = -0.691 + 10 * math.log10(mean_square) + K_WEIGHTING_MAX_GAIN_DB
    span = LOUDNESS_CEILING_LUFS - LOUDNESS_FLOOR_LUFS
    return min(1.0, max(0.0, (lufs - LOUDNESS_FLOOR_LUFS) / span))


def _sum_of_squares(audio: bytes | bytearray) -> float:
    samples = np.frombuffer(audio, dtype=np.int16).astype(np.float64)
    return float(np.dot(samples, samples))


class _SessionSileroModel(SileroOnnxModel):
    """Silero's per-stream recurrent state around a shared session."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self.reset_states()
        self.sample_rates = [8000, 16000]


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """Silero VAD for one lesson, over the process's one Silero session and VAD thread pool."""

    def __init__(
        self, *, session: onnxruntime.InferenceSession, executor: Executor, params: VADParams | None = None
    ) -> None:
        VADAnalyzer.__init__(self, params=params)
        # VADAnalyzer starts a private pool; calls for one stream are awaited one at a time, so a shared
        # pool keeps them ordered too.
        cast(ThreadPoolExecutor, self._executor).shutdown(wait=False)
        self._executor = cast(ThreadPoolExecutor, executor)
        self._model = _SessionSileroModel(session)
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._quiet_volume: float | None = None

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """As pipecat's, but only windows loud enough to be speech go to the thread pool.

        A frame that completes no 512-sample window is only buffered (pipecat hands every 20 ms frame to the
        pool, though Silero only runs once per 32 ms window). When even the loudest the windows this frame
        completes could be is below `min_volume`, they are scored here, without the model; otherwise the
        pool runs pipecat's analysis, where each window still gets the same quiet check.
        """
        pending = len(self._vad_buffer) + len(buffer)
        if pending < self._vad_frames_num_bytes:
            self._vad_buffer += buffer
            return self._vad_state
        if self._too_quiet_for_speech(buffer):
            return self._run_analyzer(buffer)
        return await super().analyze_audio(buffer)

    def _too_quiet_for_speech(self, buffer: bytes) -> bool:
        """Whether every window `buffer` completes is certain to score as not speech, whatever Silero says.

        Each window's loudness is measured over the 0.4 s of audio ending with it, all of which lies in the
        volume tracker's window, the pending samples and `buffer`: their energy bounds every one of them.
        """
        energy = (
            _sum_of_squares(self._volume_tracker._buffer) + _sum_of_squares(self._vad_buffer) + _sum_of_squares(buffer)
        )
        bound = loudness_upper_bound(energy, self._volume_window_samples())
        smoothed = exp_smoothing(bound, self._prev_volume, self._smoothing_factor)
        return max(bound, smoothed) < self._params.min_volume

    def voice_confidence(self, buffer: bytes) -> float:
        """Silero's confidence, or 0 without running it when the window is too quiet to count as speech.

        pipecat's `_run_analyzer` asks for the confidence and then the smoothed volume of each window; the
        window goes into the volume tracker here so the quiet check sees it, and `_get_smoothed_volume`
        returns the bound worked out here for a quiet window (at most 4.5 dB above the true loudness).
        """
        self._volume_tracker.update(buffer, self.sample_rate)
        bound = loudness_upper_bound(_sum_of_squares(self._volume_tracker._buffer), self._volume_window_samples())
        smoothed = exp_smoothing(bound, self._prev_volume, self._smoothing_factor)
        if smoothed < self._params.min_volume:
            self._quiet_volume = smoothed
            # Counts towards Silero's periodic reset in clear non-speech, as a low score would.
            self._maybe_reset_model(0.0)
            return 0.0
        self._quiet_volume = None
        return cast(float, super().voice_confidence(buffer))

    def _get_smoothed_volume(self, audio: bytes) -> float:
        if self._quiet_volume is not None:
            return self._quiet_volume
        # voice_confidence has already put this window in the tracker.
        return exp_smoothing(self._volume_tracker.volume, self._prev_volume, self._smoothing_factor)

    def _volume_window_samples(self) -> int:
        """The samples pipecat measures loudness over (it reads 0 until it has that many)."""
        return math.ceil(VOLUME_WINDOW_SECS * self.sample_rate)

    async def cleanup(self) -> None:
        """Nothing to release: the session and the pool belong to the process."""


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """smart-turn v3 for one lesson, over the process's one smart-turn session and turn thread pool.

    The silence after which the turn ends anyway (`stop_secs`) can be shortened for one turn (`set_pause`).
    """

    def __init__(
        self,
        *,
        session: onnxruntime.InferenceSession,
        executor: Executor,
        params: SmartTurnParams | None = None,
    ) -> None:
        BaseSmartTurn.__init__(self, params=params)
        self._log_data = False
        self._session = session
        self._shared_executor = executor

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return cast(ThreadPoolExecutor, self._shared_executor)

    def set_pause(self, secs: float | None) -> None:
        """End the turn after `secs` of silence, whatever the model thinks; None restores `stop_secs`."""
        self._stop_ms = (self._params.stop_secs if secs is None else min(secs, self._params.stop_secs)) * 1000


def is_question(text: str) -> bool:
    """Whether a transcript ends as a question does (Whisper punctuates from the intonation and the words)."""
    return text.rstrip().rstrip("\"')»”").endswith("?")


class QuestionAwareTurnStop(TurnAnalyzerUserTurnStopStrategy):
    """smart-turn decides when the learner has finished, with the transcript as a second opinion on questions.

    smart-turn judges from the sound alone, and a question said with falling intonation often scores as
    unfinished: then the turn only ends after `max_pause_secs` of silence, a second the learner waits for no
    reason. A tutor's learners mostly ask questions. When the transcript so far ends with a question mark,
    the silence that ends the turn anyway is cut to `question_pause_secs`. A learner who goes on after a short
    pause is still heard (speech resets the wait), and one who starts again later interrupts the tutor.
    """

    def __init__(self, *, turn_analyzer: SharedSmartTurnAnalyzer, question_pause_secs: float, **kwargs: Any) -> None:
        super().__init__(turn_analyzer=turn_analyzer, **kwargs)
        self._smart_turn = turn_analyzer
        self._question_pause = question_pause_secs

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        await super()._handle_transcription(frame)
        self._smart_turn.set_pause(self._question_pause if is_question(frame.text) else None)

    async def _discard_pending_end_of_turn(self) -> None:
        # The learner spoke again (or a turn boundary): the question may go on, so smart-turn decides again.
        self._smart_turn.set_pause(None)
        await super()._discard_pending_end_of_turn()


def speech_probability(session: onnxruntime.InferenceSession, pcm: np.ndarray) -> float:
    """Silero's speech probability for one 512-sample window (used by the doctor's self-check)."""
    model = _SessionSileroModel(session)
    return float(model(pcm.astype(np.float32) / 32768.0, 16000)[0][0])
