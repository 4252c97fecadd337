"""A browser-like aiortc peer for lessons: streams PCM as a paced microphone and records what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet
from av.codec import CodecContext

from server.pipeline.webrtc import receive_audio_as_it_arrives

SEND_RATE = 48000
"""Opus runs at 48 kHz, so feeding it 48 kHz spares aiortc a resampling step."""
FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SEND_RATE * FRAME_SECONDS)
"""A microphone's capture block: 20 ms, whatever the packet length (see `_MicrophoneTrack.speech_end_time`)."""
OPUS_BITRATE = 32000
"""What Chrome sends a mono microphone at."""

PLAYOUT_JITTER_MS = 20
"""How long a gap in the tutor's packets holds the ones after it, at most (rounded up to whole packets)."""

MAX_LAG = 0.06
"""How far (s) the sender may fall behind its clock before it re-anchors rather than catching up."""

SPEECH_AMPLITUDE = 300
"""|sample| above this (about 1% of full scale) counts as speech when finding where a clip's speech ends."""

DEFAULT_AUDIO_THRESHOLD = 100.0
"""RMS above which a received frame counts as the tutor speaking (decoded Opus silence is ~0)."""

_PTIME = re.compile(r"^a=ptime:(\d+)", re.MULTILINE)


def answer_ptime_ms(sdp: str) -> int:
    """The packet length the answer asks for (`a=ptime`), which Chrome's Opus encoder follows; 20 ms if none."""
    match = _PTIME.search(sdp)
    if match is None:
        return 20
    return min(120, max(20, int(match.group(1)) // 20 * 20))


PostOffer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def make_offer() -> dict[str, str]:
    """An offer as the page makes one (microphone and data channel), from a peer closed at once: a browser
    that goes away after sending it, or an offer that is to be refused."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("chat", ordered=True)
        await pc.setLocalDescription(await pc.createOffer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    finally:
        await pc.close()


@dataclass
class _SpeechMark:
    """Where a queued clip's last speech sample sits on the send timeline, and when it actually left.

    `predicted_at` is updated if the send clock re-anchors after a stall, so it stays the best estimate.
    """

    sample_index: int
    predicted_at: float
    # When it left, less the wait for the rest of a packet longer than 20 ms (`packing_delay`).
    sent_at: float | None = None


def _pcm_frame(samples: np.ndarray, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
    frame.sample_rate = SEND_RATE
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, SEND_RATE)
    return frame


class _MicrophoneEncoder:
    """Opus as a browser sends a microphone: mono, 32 kbit/s, one packet per `packet_samples`, encoded as it is
    captured.

    The track hands aiortc ready-made packets, which it sends as they are. Left to aiortc, each frame would be
    resampled to stereo and encoded at 96 kbit/s on a worker thread; with several lessons in one benchmark
    process that work competes with the server under test for the same two cores, which a browser on the
    learner's own machine does not. Digital silence, most of what a client sends, is one packet made once.
    """

    def __init__(self, packet_samples: int = FRAME_SAMPLES) -> None:
        self.packet_samples = packet_samples
        self._codec = self._new_codec()
        silence = _pcm_frame(np.zeros(packet_samples, dtype=np.int16), 0)
        self._silence = bytes(self._new_codec().encode(silence)[0])

    def _new_codec(self) -> CodecContext:
        codec = CodecContext.create("libopus", "w")
        codec.bit_rate = OPUS_BITRATE
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = SEND_RATE
        codec.time_base = fractions.Fraction(1, SEND_RATE)
        codec.options = {"application": "voip", "frame_duration": str(1000 * self.packet_samples // SEND_RATE)}
        return codec

    def encode(self, samples: np.ndarray, pts: int) -> Packet:
        data = self._silence
        if samples.any():
            packets = self._codec.encode(_pcm_frame(samples, pts))
            if packets:
                data = bytes(packets[0])
        packet = Packet(data)
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, SEND_RATE)
        return packet


class _MicrophoneTrack(MediaStreamTrack):
    """An outgoing audio track that plays queued PCM in real time, and silence when nothing is queued.

    Packet n is released at start + (n + 1) * packet length (20 ms unless the answer asked for more), like a
    microphone that hands over a packet once it has been captured. Pacing by absolute time catches up small
    delays without drifting; a long stall re-anchors the clock instead (see `_resync`).
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = np.zeros(0, dtype=np.int16)
        self._emitted = 0  # samples handed to the encoder so far
        self._start: float | None = None
        self._marks: list[_SpeechMark] = []
        self._drained = asyncio.Event()
        self._drained.set()
        self._encoder = _MicrophoneEncoder()

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def packet_samples(self) -> int:
        return self._encoder.packet_samples

    def set_packet_ms(self, packet_ms: int) -> None:
        """Send packets of this length (before the track starts), as a browser follows the answer's ptime."""
        if self._start is not None:
            raise RuntimeError("the packet length is set before the track starts")
        if packet_ms * SEND_RATE // 1000 != self.packet_samples:
            self._encoder = _MicrophoneEncoder(packet_ms * SEND_RATE // 1000)

    def frame_release_time(self, sample_index: int) -> float:
        """Monotonic time at which the packet holding `sample_index` is (or was) released."""
        assert self._start is not None
        frame_number = sample_index // self.packet_samples
        return self._start + (frame_number + 1) * self.packet_samples / SEND_RATE

    def packing_delay(self, sample_index: int) -> float:
        """How much later than a 20 ms packet would have the packet holding `sample_index` leaves (seconds).

        A browser sending longer packets waits for the rest of the packet before sending the end of the
        learner's speech; that wait is the learner's too, so the speech is taken to end when its 20 ms block
        was captured and the wait counts in voice-to-voice.
        """
        packet_end = (sample_index // self.packet_samples + 1) * self.packet_samples
        block_end = (sample_index // FRAME_SAMPLES + 1) * FRAME_SAMPLES
        return (packet_end - block_end) / SEND_RATE

    def speech_end_time(self, sample_index: int) -> float:
        """When the learner's speech ending at `sample_index` ends for voice-to-voice: its 20 ms block's release."""
        return self.frame_release_time(sample_index) - self.packing_delay(sample_index)

    def _resync(self) -> None:
        """Re-anchor the clock if the sender fell behind it by more than MAX_LAG.

        After a stall (a model load, a slow callback on the loop) catching up would burst the backlog,
        overflow the receiver's 16-packet jitter buffer and drop speech; a re-anchored clock keeps pacing.
        """
        if self._start is None:
            return
        next_release = self.frame_release_time(self._emitted)
        lag = time.monotonic() - next_release
        if lag > MAX_LAG:
            self._start += lag
            for mark in self._marks:
                mark.predicted_at = self.speech_end_time(mark.sample_index)

    def queue_end_time(self) -> float:
        """Release time of the last queued sample (now-ish when nothing is queued)."""
        return self.frame_release_time(max(self._emitted + len(self._pending) - 1, self._emitted))

    def enqueue(self, pcm: np.ndarray) -> _SpeechMark | None:
        """Queue 48 kHz int16 PCM after whatever is already queued; return where its speech ends."""
        self._resync()
        clip_start = self._emitted + len(self._pending)
        self._pending = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        self._drained.clear()
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SPEECH_AMPLITUDE)
        if len(loud) == 0:
            return None
        index = clip_start + int(loud[-1])
        mark = _SpeechMark(index, self.speech_end_time(index))
        self._marks.append(mark)
        return mark

    def clear(self) -> None:
        """Drop queued audio (a learner who stops talking mid-sentence)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._marks = [m for m in self._marks if m.sent_at is not None]
        self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def recv(self) -> Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        size = self.packet_samples
        wait = self.frame_release_time(self._emitted) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            self._resync()
        samples = self._pending[:size]
        self._pending = self._pending[size:]
        if len(samples) < size:
            samples = np.concatenate([samples, np.zeros(size - len(samples), dtype=np.int16)])
        now = time.monotonic()
        frame_end = self._emitted + size
        for mark in self._marks:
            if mark.sent_at is None and mark.sample_index < frame_end:
                mark.sent_at = now - self.packing_delay(mark.sample_index)
        self._marks = [m for m in self._marks if m.sent_at is None]
        if len(self._pending) == 0:
            self._drained.set()
        packet = self._encoder.encode(samples, self._emitted)
        self._emitted = frame_end
        return packet


class LessonClient:
    """An aiortc peer that joins a lesson the way the web page does and records what it hears.

    It creates the "chat" data channel and an audio transceiver before the offer (as pipecat's
    SmallWebRTC browser client does), pings on the data channel every second (pipecat uses the pings to
    tell a live peer from a dead one), streams queued speech as a real-time microphone, and logs every
    received audio frame as (monotonic time, RMS, seconds) and every data-channel message as (time, parsed JSON).
    It sends packets of the length the answer's `a=ptime` asks for, as Chrome does.
    """

    def __init__(self, ping_interval: float = 1.0, keep_audio: bool = False) -> None:
        """Set `keep_audio` to also keep the received audio (48 kHz mono) for transcription checks."""
        self.pc = RTCPeerConnection()
        self.pc_id: str | None = None
        # Monotonic times around signalling, for "lesson set-up" (offer sent -> answer received).
        self.offer_sent_at: float | None = None
        self.answer_received_at: float | None = None
        self.audio_frames: list[tuple[float, float, float]] = []
        self.message_log: list[tuple[float, Any]] = []
        self.keep_audio = keep_audio
        self._received_audio: list[tuple[float, np.ndarray]] = []
        self._ping_interval = ping_interval
        self._mic = _MicrophoneTrack()
        self._channel = self.pc.createDataChannel("chat", ordered=True)
        self._channel_open = asyncio.Event()
        self._new_message = asyncio.Event()
        self._new_audio = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.pc.addTrack(self._mic)
        self._channel.on("open", self._channel_open.set)
        self._channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    # -- connection --------------------------------------------------------------------------------

    async def connect(self, post_offer: PostOffer, timeout: float = 20.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Send the offer (after ICE gathering, which aiortc completes in setLocalDescription), apply the
        answer and wait until the data channel is open. Returns the answer as the server sent it."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        local = self.pc.localDescription
        self.offer_sent_at = time.monotonic()
        answer = await post_offer({"sdp": local.sdp, "type": local.type})
        self.answer_received_at = time.monotonic()
        self.pc_id = answer.get("pc_id")
        self._mic.set_packet_ms(answer_ptime_ms(answer["sdp"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(self._channel_open.wait(), timeout)
        self._tasks.append(asyncio.create_task(self._ping()))
        return answer

    async def close(self) -> None:
        """Hang up: stop pinging and reading, close the peer connection."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError, ConnectionError):
                await task
        # Closing a peer whose transport already died can wait on it for long; a hang-up must not hang.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pc.close(), 10)

    async def __aenter__(self) -> LessonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    # -- sending -----------------------------------------------------------------------------------

    def send_pcm(self, pcm: np.ndarray, sample_rate: int) -> float:
        """Queue int16 mono speech behind anything already queued.

        Returns the monotonic time at which the 20 ms block holding the clip's last speech sample is released
        (the "end of learner speech" for voice-to-voice; see `_MicrophoneTrack.packing_delay`). Call after
        `connect()`: the send clock starts when the audio track starts.
        """
        predicted, _ = self._queue(pcm, sample_rate)
        return predicted

    async def speak(self, pcm: np.ndarray, sample_rate: int) -> float:
        """Send a clip and wait until all of it has gone out; return when its speech actually left.

        The actual time differs from `send_pcm`'s prediction only if the event loop stalled the sender.
        """
        predicted, mark = self._queue(pcm, sample_rate)
        # If the connection dies the sender stops pulling frames and the queue never drains: give up once
        # the queued audio should long have gone out, rather than wait forever.
        allowed = max(0.0, self._mic.queue_end_time() - time.monotonic()) + 5.0
        try:
            await asyncio.wait_for(self._mic.wait_drained(), allowed)
        except TimeoutError:
            raise ConnectionError(f"queued audio is not being sent (connection {self.pc.connectionState})") from None
        if mark is not None and mark.sent_at is not None:
            return mark.sent_at
        return predicted

    def _queue(self, pcm: np.ndarray, sample_rate: int) -> tuple[float, _SpeechMark | None]:
        if not self._mic.started:
            raise RuntimeError("connect() before sending audio: the send clock starts with the audio track")
        samples = np.asarray(pcm, dtype=np.int16)
        if sample_rate != SEND_RATE:
            samples = soxr.resample(samples, sample_rate, SEND_RATE).astype(np.int16)
        mark = self._mic.enqueue(samples)
        if mark is None:
            return self._mic.queue_end_time(), None
        return mark.predicted_at, mark

    def stop_speaking(self) -> None:
        """Drop any queued speech not sent yet."""
        self._mic.clear()

    def send_message(self, message: dict[str, Any]) -> None:
        """Send a JSON message on the data channel (e.g. an RTVI client message)."""
        self._channel.send(json.dumps(message))

    async def _ping(self) -> None:
        # Same keep-alive as pipecat's browser client: the server treats >3 s without a ping as gone.
        while True:
            if self._channel.readyState == "open" and self.pc.connectionState == "connected":
                self._channel.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(self._ping_interval)

    # -- receiving ---------------------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        now = time.monotonic()
        try:
            parsed: Any = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = message
        self.message_log.append((now, parsed))
        self._new_message.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            # A browser's jitter buffer starts playing on the first packet and holds only for a gap; aiortc's
            # own holds 4 packets (80 ms with 20 ms packets, 160 ms with 40 ms) before the first, then each
            # packet until the next arrives, which would count against the server in every measurement.
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver is not None and transceiver.receiver.track is track:
                    receive_audio_as_it_arrives(transceiver.receiver, PLAYOUT_JITTER_MS)
            self._tasks.append(asyncio.create_task(self._read_audio(track)))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            assert isinstance(frame, AudioFrame)
            samples = frame.to_ndarray()  # packed s16, channels interleaved in one row
            level = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
            self.audio_frames.append((now, level, frame.samples / frame.sample_rate))
            if self.keep_audio:
                channels = len(frame.layout.channels)
                mono = samples.reshape(-1, channels)[:, 0].astype(np.int16)
                if frame.sample_rate != SEND_RATE:
                    mono = soxr.resample(mono, frame.sample_rate, SEND_RATE).astype(np.int16)
                self._received_audio.append((now, mono))
            self._new_audio.set()

    @property
    def messages(self) -> list[Any]:
        """Every data-channel message received so far, parsed as JSON where possible."""
        return [message for _, message in self.message_log]

    async def wait_for_message(
        self,
        predicate: Callable[[Any], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 -- part of the helper's agreed interface
        since: float | None = None,
    ) -> Any:
        """Return the first message (received at or after `since`, if given) matching `predicate`."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for at, message in self.message_log[checked:]:
                checked += 1
                if (since is None or at >= since) and predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [m for _, m in self.message_log][-10:]
                raise TimeoutError(f"no matching data-channel message within {timeout} s; last: {seen}")
            self._new_message.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_message.wait(), remaining)

    def message_time(self, predicate: Callable[[Any], bool], since: float | None = None) -> float | None:
        """Arrival time of the first message (at or after `since`) matching `predicate`."""
        for at, message in self.message_log:
            if (since is None or at >= since) and predicate(message):
                return at
        return None

    def first_audio_after(self, t: float, threshold: float = DEFAULT_AUDIO_THRESHOLD) -> float | None:
        """Time of the first received non-silent audio frame at or after `t`."""
        for at, level, _ in self.audio_frames:
            if at >= t and level > threshold:
                return at
        return None

    def last_audio_time(self, threshold: float = DEFAULT_AUDIO_THRESHOLD) -> float | None:
        """Time of the latest received non-silent audio frame."""
        for at, level, _ in reversed(self.audio_frames):
            if level > threshold:
                return at
        return None

    def longest_gap(self, since: float, threshold: float = DEFAULT_AUDIO_THRESHOLD) -> float:
        """The longest silence between two non-silent frames received at or after `since` (0 if under two)."""
        loud = [at for at, level, _ in self.audio_frames if at >= since and level > threshold]
        return max((b - a for a, b in itertools.pairwise(loud)), default=0.0)

    def audio_seconds_after(
        self, t: float, until: float | None = None, threshold: float = DEFAULT_AUDIO_THRESHOLD
    ) -> float:
        """How many seconds of non-silent audio arrived at or after `t` (and before `until`)."""
        return sum(
            seconds
            for at, level, seconds in self.audio_frames
            if at >= t and (until is None or at < until) and level > threshold
        )

    async def wait_for_audio(
        self,
        after: float,
        timeout: float = 10.0,  # noqa: ASYNC109 -- same shape as wait_for_message
        threshold: float = DEFAULT_AUDIO_THRESHOLD,
    ) -> float:
        """Wait for non-silent audio at or after `after`; return its arrival time."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.first_audio_after(after, threshold)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no tutor audio within {timeout} s")
            self._new_audio.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_audio.wait(), remaining)

    async def wait_for_quiet(
        self,
        quiet: float = 1.0,
        timeout: float = 30.0,  # noqa: ASYNC109 -- same shape as wait_for_message
        threshold: float = DEFAULT_AUDIO_THRESHOLD,
    ) -> float:
        """Wait until no non-silent audio has arrived for `quiet` seconds; return the last loud frame's time
        (or the start of waiting if nothing loud ever arrived)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            now = time.monotonic()
            last = self.last_audio_time(threshold)
            reference = last if last is not None else started
            if now - reference >= quiet:
                return last if last is not None else started
            if now >= deadline:
                raise TimeoutError(f"tutor audio did not stop within {timeout} s")
            await asyncio.sleep(min(0.05, deadline - now))

    def received_pcm(self, since: float = 0.0, until: float | None = None) -> np.ndarray:
        """Received audio (48 kHz mono int16) between two times; needs `keep_audio=True`."""
        if not self.keep_audio:
            raise RuntimeError("LessonClient(keep_audio=True) is needed to keep received audio")
        parts = [pcm for at, pcm in self._received_audio if at >= since and (until is None or at <= until)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
