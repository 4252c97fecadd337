"""Silero VAD and smart-turn v3 analyzers that run on shared onnx sessions and shared thread pools.

pipecat's analyzers each load their own onnx session and start their own thread; per lesson that is
~0.2 s of set-up and tens of MB. The sessions are stateless (state lives in the arrays passed in), so
one session per model serves every lesson.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from typing import cast

import numpy as np
import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState


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

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """As pipecat's, but a frame that does not complete a 512-sample window is only buffered, here.

        pipecat hands every 20 ms frame to the thread pool, though Silero only runs once per 32 ms window:
        a third of those hand-offs (each a thread wake-up and an event-loop wake-up) did nothing.
        """
        if len(self._vad_buffer) + len(buffer) < self._vad_frames_num_bytes:
            self._vad_buffer += buffer
            return self._vad_state
        return await super().analyze_audio(buffer)

    async def cleanup(self) -> None:
        """Nothing to release: the session and the pool belong to the process."""


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """smart-turn v3 for one lesson, over the process's one smart-turn session and turn thread pool."""

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


def speech_probability(session: onnxruntime.InferenceSession, pcm: np.ndarray) -> float:
    """Silero's speech probability for one 512-sample window (used by the doctor's self-check)."""
    model = _SessionSileroModel(session)
    return float(model(pcm.astype(np.float32) / 32768.0, 16000)[0][0])
