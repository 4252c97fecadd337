"""pipecat's SmallWebRTC transport, made cheaper per lesson: the audio path every lesson pays for each packet.

Profiling 4 idle lessons showed the server's event loop ~90% busy, and most of it in the per-packet audio path
of pipecat's SmallWebRTC client and aiortc, not in the models. The changes, all on the wire side:

- **The tutor sends no packets while silent.** pipecat's output track hands aiortc 10 ms of silence at a time
  whenever the tutor is quiet, each one Opus-encoded, SRTP-protected and sent, and decoded again by the
  learner's browser. Here the track goes quiet after a short tail, the way Opus DTX does: RTP sequence numbers
  stay contiguous and the timestamps jump over the gap, which every WebRTC receiver plays as silence.
- **The learner's audio is read without a task per frame or a filter graph.** pipecat wraps every `recv()` in
  `wait_for` (a new task each 20 ms) and converts aiortc's 48 kHz stereo with PyAV's `AudioResampler` (a
  filter graph per call). Here it is one `asyncio.timeout` and a numpy downmix with a streaming soxr resampler.
- **The tutor's audio is Opus-encoded in the track** (`QuietAudioTrack.recv`), mono at the pipeline's rate,
  and aiortc sends the finished packets. Left to aiortc, each 20 ms frame was resampled to 48 kHz stereo,
  encoded at 96 kbit/s on a worker thread (a round trip per frame) and given an RFC 6465 level computed
  with a Python loop over every sample.
- **The learner's packets are decoded on the event loop** (`InlineAudioDecoding`), not on a thread per track.
- **40 ms packets both ways** (`voice.packet_ms`). The answer asks the browser for `a=ptime:40`, which
  Chrome's Opus encoder follows, and the tutor's track encodes 40 ms frames: half the packets to protect, send,
  receive and decode, on the server and in the browser, for the same audio.
- **No packet is held back** (`AudioJitterBuffer`). aiortc's jitter buffer holds 4 packets of the learner's
  audio before the first, then hands over each only once a later one has arrived, so the end of every
  utterance reached the pipeline a packet late; every one of those milliseconds is added to the tutor's reply
  time. Audio packets go on in order as they come; only a gap in the sequence holds the ones after it, for at
  most `voice.input_jitter_ms`.
- **Pipeline frames of at least 40 ms** (`INPUT_FRAME_MS`): with 20 ms packets two make one frame, halving
  the frames every processor queues.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import re
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import av
import numpy as np
import soxr
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, Packet
from av.audio.codeccontext import AudioCodecContext
from av.codec import CodecContext
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import (
    RawAudioTrack,
    SmallWebRTCCallbacks,
    SmallWebRTCClient,
    SmallWebRTCTransport,
)

log = logging.getLogger(__name__)

OPUS_RATE = 48000
# Packets that may sit behind a missing one before it is given up for lost, whatever the jitter setting.
MAX_REORDER_PACKETS = 8
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
# soxr's low quality still filters well above speech; its streaming delay is 6 ms, against 21 ms for "HQ",
# and every millisecond of it delays the end of the learner's turn.
RESAMPLE_QUALITY = "LQ"
# The learner's audio goes down the pipeline 40 ms at a time, two packets to a frame: every frame costs the
# event loop a trip through each processor's queue, and Silero scores 32 ms windows anyway. It adds 10 ms on
# average to noticing the end of the learner's speech.
INPUT_FRAME_MS = 40
# How long a read of the learner's track may wait before the reader looks again (a replaced or ended track).
READ_TIMEOUT_SECS = 2.0


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


_AUDIO_SECTION = re.compile(r"(^m=audio [^\r\n]*(?:\r?\n))", re.MULTILINE)


def with_ptime(sdp: str, packet_ms: int) -> str:
    """The answer with `a=ptime` on its audio section: the packet length the browser should send (RFC 4566).

    Chrome's Opus encoder takes its frame length from the remote description's ptime; a peer that ignores it
    keeps sending 20 ms packets, which the server takes as well.
    """
    if packet_ms == 20 or "a=ptime:" in sdp:
        return sdp

    def add(match: re.Match[str]) -> str:
        line = match.group(1)
        newline = "\r\n" if line.endswith("\r\n") else "\n"
        return f"{line}a=ptime:{packet_ms}{newline}"

    return _AUDIO_SECTION.sub(add, sdp)


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


class LessonWebRTCClient(SmallWebRTCClient):
    """pipecat's SmallWebRTC client with the cheaper input read, the quiet output track and a set jitter depth."""

    def __init__(
        self,
        webrtc_connection: SmallWebRTCConnection,
        callbacks: SmallWebRTCCallbacks,
        input_jitter_ms: int,
        packet_ms: int = 20,
    ) -> None:
        super().__init__(webrtc_connection, callbacks)
        self._input_jitter_ms = input_jitter_ms
        self._packet_ms = packet_ms
        self._input_frame_bytes = 0  # set once the pipeline's input rate is known
        self._learner_audio: LearnerAudio | None = None

    async def _handle_client_connected(self) -> None:
        """As pipecat's, with the quiet output track; lessons send no video, so none is set up."""
        if not self._params:
            return  # the pipeline is not set up yet; pipecat calls this again once it is
        self._set_input_jitter()
        connection = self._webrtc_connection
        self._audio_input_track = connection.audio_input_track()
        self._video_input_track = connection.video_input_track()
        self._screen_video_track = connection.screen_video_input_track()
        if self._params.audio_out_enabled:
            self._audio_output_track = QuietAudioTrack(sample_rate=self._out_sample_rate, packet_ms=self._packet_ms)
            connection.replace_audio_track(self._audio_output_track)
        await self._callbacks.on_client_connected(connection)

    def _set_input_jitter(self) -> None:
        """Replace aiortc's audio jitter buffer (4 packets, and one more held for the next) with one that
        passes packets on as they come, and decode the learner's audio on the event loop instead of aiortc's
        decoder thread."""
        for transceiver in self._webrtc_connection.pc.getTransceivers():
            if transceiver.kind == "audio" and transceiver.receiver is not None:
                receive_audio_as_it_arrives(transceiver.receiver, self._input_jitter_ms)

    async def read_audio_frame(self) -> AsyncGenerator[InputAudioRawFrame, None]:
        """The learner's audio as 16-bit mono PCM at the pipeline's input rate, 40 ms or more a frame.

        Lessons always take mono input (TransportParams' default of one channel), which is what this yields.
        Packets shorter than INPUT_FRAME_MS are joined into one pipeline frame.
        """
        pending = bytearray()
        while True:
            track = self._audio_input_track
            if track is None:
                await asyncio.sleep(0.01)
                continue
            try:
                async with asyncio.timeout(READ_TIMEOUT_SECS):
                    frame = await track.recv()
            except TimeoutError:
                continue  # nothing for a while (muted, reconnecting): look at the track again
            except MediaStreamError:
                log.info("voice: the learner's audio track ended")
                self._audio_input_track = None
                continue
            if not isinstance(frame, AudioFrame):
                await asyncio.sleep(0.01)
                continue
            if self._learner_audio is None:
                self._learner_audio = LearnerAudio(self._in_sample_rate, self._audio_in_resampler)
                self._input_frame_bytes = self._in_sample_rate * INPUT_FRAME_MS // 1000 * 2
            pending += self._learner_audio.convert(frame)
            if len(pending) >= self._input_frame_bytes:
                audio = LearnerAudioFrame(audio=bytes(pending), sample_rate=self._in_sample_rate, num_channels=1)
                audio.pts = frame.pts
                pending.clear()
                yield audio


class LearnerAudioFrame(InputAudioRawFrame):
    """The learner's audio, named in one word when formatted.

    pipecat builds a trace message for every frame pushed between processors, logged or not; pipecat's
    audio frames format their timestamp and sizes into it, 25 times a second per lesson per processor.
    """

    def __str__(self) -> str:
        return self.name


def receive_audio_as_it_arrives(receiver: RTCRtpReceiver, max_wait_ms: int) -> None:
    """Give an aiortc audio receiver the in-order jitter buffer and decoding on the event loop.

    Call once the receiver's track exists (on connection, or on the peer's "track" event) and before its
    packets matter: the packets aiortc's own buffer still holds are dropped.
    """
    receiver._RTCRtpReceiver__jitter_buffer = AudioJitterBuffer(max_wait_ms)  # type: ignore[attr-defined]
    queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    track = receiver._track
    if track is not None and not isinstance(queue, InlineAudioDecoding):
        inline = InlineAudioDecoding(queue, track._queue)
        receiver._RTCRtpReceiver__decoder_queue = inline  # type: ignore[attr-defined]


class AudioPackets(JitterFrame):
    """Several in-order audio packets the jitter buffer releases at once (after a gap filled late).

    aiortc's receiver takes one frame from each `add` and maps its RTP timestamp; the packets keep their own,
    shifted by the same offset when decoded.
    """

    def __init__(self, packets: list[JitterFrame]) -> None:
        super().__init__(data=packets[0].data, timestamp=packets[0].timestamp)
        self.packets = packets
        self.rtp_timestamp = packets[0].timestamp


class AudioJitterBuffer:
    """An audio jitter buffer that passes each packet on as soon as it is next in order.

    aiortc's buffer is built for video, where a frame spans packets: it releases a frame only once a packet of
    the next one has arrived, and for audio holds 4 packets first. An Opus packet is a whole frame, so here a
    packet in sequence goes straight to the decoder. A gap holds the packets after it until the missing one
    comes or `max_wait_ms` of later audio has piled up; then the missing packet is given up for lost (a short
    gap in the learner's audio, as in aiortc) and a straggler arriving after that is dropped.
    """

    RTP_CLOCK_MS = 48  # Opus RTP timestamps tick at 48 kHz whatever the audio's rate (RFC 7587)
    RESTART_GAP = 3000  # sequence numbers: further ahead or behind than this is a new stream, not a gap

    def __init__(self, max_wait_ms: int) -> None:
        self._max_wait_ms = max_wait_ms
        self._next: int | None = None
        self._held: dict[int, Any] = {}
        self._packet_ticks = 20 * self.RTP_CLOCK_MS
        self._last_timestamp: int | None = None
        self.lost = 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        """Take one RTP packet (payload already depayloaded to `_data`); return aiortc's (pli, frame) pair."""
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        ahead = (seq - self._next) & 0xFFFF
        if ahead >= 0x8000 and 0x10000 - ahead < self.RESTART_GAP:
            return False, None  # late (given up already) or a duplicate
        if ahead >= self.RESTART_GAP:
            self._held.clear()
            self._next = seq
        self._held[seq] = packet
        ready = self._release()
        if len(self._held) > self._packets_to_wait():
            self._skip_gap()
            ready += self._release()
        if not ready:
            return False, None
        return False, ready[0] if len(ready) == 1 else AudioPackets(ready)

    def _release(self) -> list[JitterFrame]:
        ready = []
        while self._next in self._held:
            packet = self._held.pop(self._next)
            if self._last_timestamp is not None:
                ticks = (packet.timestamp - self._last_timestamp) & 0xFFFFFFFF
                if 0 < ticks <= 120 * self.RTP_CLOCK_MS:
                    self._packet_ticks = ticks
            self._last_timestamp = packet.timestamp
            ready.append(JitterFrame(data=packet._data, timestamp=packet.timestamp))
            self._next = (self._next + 1) & 0xFFFF
        return ready

    def _packets_to_wait(self) -> int:
        """Packets that may be held behind a gap: `max_wait_ms` of audio, rounded up to whole packets.

        The buffer only looks again when a packet arrives, so a gap is given up on the first arrival past that.
        """
        packets = math.ceil(self._max_wait_ms * self.RTP_CLOCK_MS / self._packet_ticks)
        return min(packets, MAX_REORDER_PACKETS)

    def _skip_gap(self) -> None:
        assert self._next is not None
        first = min(self._held, key=lambda s: (s - self._next) & 0xFFFF)  # type: ignore[operator]
        self.lost += (first - self._next) & 0xFFFF
        self._next = first


class InlineAudioDecoding:
    """Takes the place of an aiortc audio receiver's decoder-thread queue and decodes each frame at once.

    aiortc decodes on a thread per receiver: each 20 ms packet is a queue hand-off to that thread and a
    `run_coroutine_threadsafe` back (a self-pipe write, an event-loop wake-up and a new task), which cost the
    event loop more than decoding the packet (~50 µs of libopus) does. Here the receiver's packet handler,
    already on the event loop, decodes the frame and queues the result for the track itself.

    aiortc's thread, started before or after this took its place, stays parked on its own queue; the `None`
    that stops the receiver is passed on to it, so it ends the track as it always has.
    """

    def __init__(self, thread_queue: Any, track_queue: asyncio.Queue[Any]) -> None:
        self._thread_queue = thread_queue
        self._track_queue = track_queue
        self._codec_name: str | None = None
        self._decoder: Any = None
        self._packet_logged = False

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """For aiortc's decoder thread when it starts after this took the queue's place (a client's receiver
        is set up before it connects): it parks on its own queue as it would have."""
        return self._thread_queue.get(*args, **kwargs)

    def put(self, task: Any) -> None:
        if task is None:
            self._thread_queue.put(None)
            return
        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder = get_decoder(codec)
            self._codec_name = codec.name
        if isinstance(encoded_frame, AudioPackets):
            shift = encoded_frame.timestamp - encoded_frame.rtp_timestamp  # the receiver's timestamp mapping
            for packet in encoded_frame.packets:
                packet.timestamp += shift
                self._decode(codec.name, packet)
        else:
            self._decode(codec.name, encoded_frame)

    def _decode(self, codec_name: str, encoded_frame: JitterFrame) -> None:
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:
            # As aiortc: keep the decoder's state, drop the frame (a lost packet is a short gap).
            log.warning("voice: the learner's %s frame did not decode: %s", codec_name, exc)
            return
        for frame in frames:
            if not self._packet_logged:
                self._packet_logged = True
                log.info(
                    "voice: the learner's audio arrives in %d ms packets", 1000 * frame.samples // frame.sample_rate
                )
            self._track_queue.put_nowait(frame)


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


class LessonTransport(SmallWebRTCTransport):
    """SmallWebRTCTransport over a LessonWebRTCClient; everything else (events, input/output) as pipecat has it."""

    def __init__(
        self,
        webrtc_connection: SmallWebRTCConnection,
        params: TransportParams,
        input_jitter_ms: int,
        packet_ms: int = 20,
    ) -> None:
        # SmallWebRTCTransport.__init__ builds its own client, which registers handlers on the connection that
        # cannot be taken back; so this repeats its few lines with our client instead.
        BaseTransport.__init__(self)
        self._params = params
        self._callbacks = SmallWebRTCCallbacks(
            on_app_message=self._on_app_message,
            on_client_connected=self._on_client_connected,
            on_client_disconnected=self._on_client_disconnected,
            on_track_status=self._on_track_status,
        )
        self._client = LessonWebRTCClient(webrtc_connection, self._callbacks, input_jitter_ms, packet_ms)
        self._input = None
        self._output = None
        self._register_event_handler("on_app_message")
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")
