"""The learner's packets: an in-order audio jitter buffer, and decoding on the event loop (aiortc's receiver)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame

log = logging.getLogger(__name__)

# Packets that may sit behind a missing one before it is given up for lost, whatever the jitter setting.
MAX_REORDER_PACKETS = 8


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
