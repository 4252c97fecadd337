"""The learner's decoded audio as the pipeline takes it: 16-bit mono PCM at its input rate, 40 ms a frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr
from av import AudioFrame
from pipecat.frames.frames import InputAudioRawFrame

OPUS_RATE = 48000
# soxr's low quality still filters well above speech; its streaming delay is 6 ms, against 21 ms for "HQ",
# and every millisecond of it delays the end of the learner's turn.
RESAMPLE_QUALITY = "LQ"
# The learner's audio goes down the pipeline 40 ms at a time, two packets to a frame: every frame costs the
# event loop a trip through each processor's queue, and Silero scores 32 ms windows anyway. It adds 10 ms on
# average to noticing the end of the learner's speech.
INPUT_FRAME_MS = 40
# How long a read of the learner's track may wait before the reader looks again (a replaced or ended track).
READ_TIMEOUT_SECS = 2.0


class LearnerAudioFrame(InputAudioRawFrame):
    """The learner's audio, named in one word when formatted.

    pipecat builds a trace message for every frame pushed between processors, logged or not; pipecat's
    audio frames format their timestamp and sizes into it, 25 times a second per lesson per processor.
    """

    def __str__(self) -> str:
        return self.name


class LearnerAudio:
    """Turns aiortc's decoded frames into the pipeline's 16-bit mono PCM at its input rate.

    Opus always decodes to 48 kHz interleaved stereo: one channel is kept and resampled by a streaming soxr
    resampler (state carried across frames, so no clicks at frame edges). Anything else goes through PyAV's
    general resampler, as in pipecat.
    """

    def __init__(self, sample_rate: int, fallback: Any) -> None:
        self.sample_rate = sample_rate
        self._fallback = fallback
        self._stream: soxr.ResampleStream | None = None

    def convert(self, frame: AudioFrame) -> bytes:
        if frame.sample_rate != OPUS_RATE or frame.format.name != "s16":
            return b"".join(f.to_ndarray().astype(np.int16).tobytes() for f in self._fallback.resample(frame))
        samples = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        mono = samples[::channels] if channels > 1 else samples
        if self.sample_rate == OPUS_RATE:
            return mono.tobytes()
        if self._stream is None:
            self._stream = soxr.ResampleStream(OPUS_RATE, self.sample_rate, 1, dtype="int16", quality=RESAMPLE_QUALITY)
        return self._stream.resample_chunk(np.ascontiguousarray(mono)).tobytes()
