"""The tutor's outgoing track: Opus encoded in the track, paced while there is audio, silent while there is not."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import cast

import numpy as np
from av import AudioFrame, Packet
from av.audio.codeccontext import AudioCodecContext
from av.codec import CodecContext
from pipecat.transports.smallwebrtc.transport import RawAudioTrack

# Mono speech at 32 kbit/s is what browsers send a microphone at; aiortc's default is 96 kbit/s stereo.
TUTOR_OPUS_BITRATE = 32000
# libopus complexity (0-10, default 10). 5, as WebRTC uses on phones, halves the encoder's CPU (0.22 against
# 0.42 ms a frame here) for speech that sounds the same at this bitrate, and every lesson encodes 50 a second.
TUTOR_OPUS_COMPLEXITY = 5
# Quiet audio (ms) sent after the tutor's last words before the track stops sending: lets Opus end the tail.
QUIET_TAIL_MS = 100
# Packets of the tutor's audio queued in the track before the output transport may write more: covers that
# much event-loop delay without a gap, and is what plays on after the learner interrupts.
LOOKAHEAD_PACKETS = 2


def tutor_opus_encoder(sample_rate: int, packet_ms: int) -> AudioCodecContext:
    """libopus for the tutor's voice: mono, speech-tuned, at the pipeline's rate (8-48 kHz are native to Opus)."""
    codec = cast(AudioCodecContext, CodecContext.create("libopus", "w"))
    codec.bit_rate = TUTOR_OPUS_BITRATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = sample_rate
    codec.time_base = fractions.Fraction(1, sample_rate)
    codec.options = {
        "application": "voip",
        "compression_level": str(TUTOR_OPUS_COMPLEXITY),
        "frame_duration": str(packet_ms),
    }
    return codec


class QuietAudioTrack(RawAudioTrack):
    """The tutor's outgoing track: paced packets while there is audio, nothing at all while there is not.

    Built on pipecat's RawAudioTrack so the output transport queues audio into it the same way; only what
    happens when the queue runs dry differs.
    """

    def __init__(self, sample_rate: int, packet_ms: int = 20) -> None:
        super().__init__(sample_rate=sample_rate, auto_silence=True)
        # pipecat's track works in 10 ms chunks; here a chunk is one Opus packet's worth, as smaller frames
        # would multiply every lesson's wake-ups and encoder hand-offs.
        self._packet_ms = packet_ms
        self._samples_per_10ms *= packet_ms // 10
        self._bytes_per_10ms *= packet_ms // 10
        self._audio_ready = asyncio.Event()
        self._quiet_frames = 0
        self._quiet_tail_frames = max(1, QUIET_TAIL_MS // packet_ms)
        self._encoder = tutor_opus_encoder(sample_rate, packet_ms)
        self._silence: bytes | None = None

    def add_audio_bytes(self, audio_bytes: bytes) -> asyncio.Future[bool]:
        # The output transport sends whole 10 ms multiples; pad to the packet's length so none is refused.
        remainder = len(audio_bytes) % self._bytes_per_10ms
        if remainder:
            audio_bytes += bytes(self._bytes_per_10ms - remainder)
        future: asyncio.Future[bool] = super().add_audio_bytes(audio_bytes)
        self._audio_ready.set()
        self._release_writers()
        return future

    async def recv(self) -> Packet:  # type: ignore[override]
        """The next packet's worth as Opus, encoded here; aiortc sends finished packets as they are.

        Left to aiortc, each frame is resampled to 48 kHz stereo by a filter graph and encoded at 96 kbit/s
        on a worker thread, a round trip per frame. libopus takes the pipeline's 24 kHz mono directly.
        """
        frame = await self.recv_frame()
        packets = self._encoder.encode(frame)
        packet = packets[0] if packets else self._silence_packet()
        packet.pts = frame.pts
        packet.time_base = fractions.Fraction(1, self._sample_rate)
        return packet

    async def recv_frame(self) -> AudioFrame:
        """The next packet's worth of the tutor's audio, paced in real time; waits while the tutor is silent."""
        if not self._chunk_queue:
            self._quiet_frames += 1
            if self._quiet_frames > self._quiet_tail_frames:
                await self._wait_for_audio()
        else:
            self._quiet_frames = 0
        frame: AudioFrame = await super().recv()
        self._release_writers()
        return frame

    def _release_writers(self) -> None:
        """Let the output transport write its next audio once what it wrote is within the lookahead.

        pipecat's track resolves a write's future when its last packet is taken, so the queue runs dry right
        then and the next write has one packet's time to arrive; an event loop busy with other lessons for
        longer puts a silent packet into the tutor's sentence and delays the rest. Here a write is done once
        at most LOOKAHEAD_PACKETS are queued ahead of it, so that much audio covers the loop's delays.
        """
        for index, (_, future) in enumerate(self._chunk_queue):
            if index >= LOOKAHEAD_PACKETS:
                break
            if future is not None and not future.done():
                future.set_result(True)

    def _silence_packet(self) -> Packet:
        """A packet of silence, for the frame the encoder's start-up delay leaves without one."""
        if self._silence is None:
            encoder = tutor_opus_encoder(self._sample_rate, self._packet_ms)
            frame = AudioFrame.from_ndarray(np.zeros((1, self._samples_per_10ms), dtype=np.int16), layout="mono")
            frame.sample_rate = self._sample_rate
            frame.pts = 0
            frame.time_base = fractions.Fraction(1, self._sample_rate)
            packets = encoder.encode(frame) or encoder.encode(None)
            self._silence = bytes(packets[0])
        return Packet(self._silence)

    async def _wait_for_audio(self) -> None:
        """Send nothing until audio is queued, then carry on with the timestamps advanced over the gap."""
        self._audio_ready.clear()
        while not self._chunk_queue:
            await self._audio_ready.wait()
            self._audio_ready.clear()
        self._quiet_frames = 0
        # The RTP timestamp of the next frame says how long the tutor was quiet; the pacing clock restarts.
        now = time.time()
        gap = max(0.0, now - (self._start + self._timestamp / self._sample_rate))
        frames = int(gap * 1000 / self._packet_ms)
        self._timestamp += frames * self._samples_per_10ms
        self._start = now - self._timestamp / self._sample_rate
