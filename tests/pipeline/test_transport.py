"""The lesson transport's audio path: what the learner's browser is sent, and what the pipeline hears."""

from __future__ import annotations

import asyncio
import fractions
import queue
import threading

import numpy as np
from aiortc.codecs import get_capabilities
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame, AudioResampler

from server.pipeline.sdp import with_ptime
from server.pipeline.webrtc.jitter import AudioJitterBuffer, AudioPackets, InlineAudioDecoding
from server.pipeline.webrtc.learner_audio import LearnerAudio
from server.pipeline.webrtc.tutor_track import LOOKAHEAD_PACKETS, QUIET_TAIL_MS, QuietAudioTrack

OUT_RATE = 24000
FRAME = OUT_RATE // 50  # samples in one 20 ms frame


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def test_the_tutor_track_plays_queued_audio_then_falls_silent_without_sending() -> None:
    track = QuietAudioTrack(sample_rate=OUT_RATE)
    # 50 ms of speech: not a whole number of 20 ms frames, so the last frame is padded, never refused.
    played = track.add_audio_bytes(tone(0.05, OUT_RATE).tobytes())

    frames = [await track.recv_frame() for _ in range(3 + QUIET_TAIL_MS // 20)]
    assert played.done(), "queued audio was not all played"
    assert all(f.samples == FRAME and f.sample_rate == OUT_RATE for f in frames)
    loud = [int(np.abs(f.to_ndarray()).max()) for f in frames]
    assert all(level > 1000 for level in loud[:2]), "the tutor's audio did not come out first"
    assert all(level == 0 for level in loud[3:]), "a short quiet tail follows the tutor's audio"
    assert [f.pts for f in frames] == [i * FRAME for i in range(len(frames))]

    # Now nothing is queued: the track sends nothing at all until the tutor speaks again.
    waiting = asyncio.create_task(track.recv_frame())
    await asyncio.sleep(0.3)
    assert not waiting.done(), "the track kept sending while the tutor was silent"

    track.add_audio_bytes(tone(0.02, OUT_RATE).tobytes())
    resumed = await asyncio.wait_for(waiting, timeout=5)
    assert int(np.abs(resumed.to_ndarray()).max()) > 1000
    # The RTP timestamp jumps over the silence (as with Opus DTX), in whole frames, so the browser plays
    # the gap as silence instead of squeezing it out.
    last, pts = frames[-1].pts, resumed.pts
    assert last is not None and pts is not None
    assert pts % FRAME == 0
    assert pts - last >= int(0.3 * OUT_RATE)
    assert resumed.time_base == fractions.Fraction(1, OUT_RATE)


def opus_like_frames(pcm: np.ndarray, rate: int = 48000, channels: int = 2) -> list[AudioFrame]:
    """What aiortc's Opus decoder hands over: 20 ms of packed s16 at 48 kHz, the channel repeated."""
    frames = []
    per_frame = rate // 50
    for start in range(0, len(pcm) - per_frame + 1, per_frame):
        chunk = pcm[start : start + per_frame]
        packed = np.repeat(chunk, channels)[None, :]
        frame = AudioFrame.from_ndarray(packed, format="s16", layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = rate
        frame.pts = start
        frames.append(frame)
    return frames


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def test_the_learners_stereo_48k_audio_reaches_the_pipeline_as_16k_mono_unchanged() -> None:
    audio = LearnerAudio(16000, AudioResampler("s16", "mono", 16000))
    source = tone(1.0, 48000, hz=440.0)
    out = np.frombuffer(b"".join(audio.convert(f) for f in opus_like_frames(source)), dtype=np.int16)

    # A second of audio stays a second, held back by at most 10 ms, at the same pitch and level.
    assert 16000 - 160 <= len(out) <= 16000
    steady = out[1600:]
    assert abs(dominant_hz(steady, 16000) - 440.0) < 5.0
    assert 0.8 * 8000 < np.abs(steady).max() < 1.1 * 8000


def test_audio_that_is_not_opus_shaped_still_reaches_the_pipeline() -> None:
    audio = LearnerAudio(16000, AudioResampler("s16", "mono", 16000))
    source = tone(0.5, 8000, hz=300.0)
    frame = AudioFrame.from_ndarray(source[None, :], format="s16", layout="mono")
    frame.sample_rate = 8000
    frame.time_base = fractions.Fraction(1, 8000)
    frame.pts = 0
    out = np.frombuffer(audio.convert(frame), dtype=np.int16)
    assert len(out) > 0.4 * 16000
    assert abs(dominant_hz(out, 16000) - 300.0) < 10.0


def opus_packets(count: int) -> list[JitterFrame]:
    """`count` 20 ms Opus packets of a 300 Hz tone, as a browser sends them (aiortc's encoder)."""
    encoder = OpusEncoder()
    pcm = tone(count * 0.02, 48000, hz=300)
    encoded = []
    for i in range(count):
        frame = AudioFrame.from_ndarray(pcm[None, i * 960 : (i + 1) * 960], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        encoded.extend(JitterFrame(data=p, timestamp=timestamp) for p in payloads)
    return encoded


OPUS = next(c for c in get_capabilities("audio").codecs if c.name == "opus")


async def test_the_learners_packets_are_decoded_in_order_as_they_arrive_and_a_stop_still_ends_the_track() -> None:
    encoded = opus_packets(10)

    thread_queue: queue.Queue[object] = queue.Queue()
    track_queue: asyncio.Queue[object] = asyncio.Queue()
    decoding = InlineAudioDecoding(thread_queue, track_queue)
    for packet in encoded:
        decoding.put((OPUS, packet))
    decoded = [track_queue.get_nowait() for _ in range(track_queue.qsize())]
    assert len(decoded) == len(encoded), "every packet is decoded at once, with no thread in between"
    assert all(isinstance(f, AudioFrame) and f.samples == 960 for f in decoded)
    assert [f.pts for f in decoded] == sorted(f.pts for f in decoded)
    assert np.abs(np.concatenate([f.to_ndarray().reshape(-1) for f in decoded[2:]])).max() > 1000

    # The receiver's stop is passed to aiortc's parked decoder thread, which ends the track.
    decoding.put(None)
    assert thread_queue.get_nowait() is None

    # A decoder thread started after the swap (a client's receiver connects later) parks and stops the same.
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(decoding.get()))
    thread.start()
    decoding.put(None)
    thread.join(timeout=5)
    assert got == [None]


async def test_the_tutor_track_hands_aiortc_opus_packets_that_decode_back_to_the_tutors_voice() -> None:
    from aiortc.codecs.opus import OpusDecoder

    track = QuietAudioTrack(sample_rate=OUT_RATE)
    track.add_audio_bytes(tone(0.2, OUT_RATE, hz=300).tobytes())
    packets = [await track.recv() for _ in range(10)]
    # One packet per 20 ms, stamped on the track's clock (aiortc turns it into the RTP timestamp).
    assert [p.pts for p in packets] == [i * FRAME for i in range(10)]
    assert all(p.time_base == fractions.Fraction(1, OUT_RATE) for p in packets)
    assert all(0 < p.size < 200 for p in packets), "about 32 kbit/s: 80 bytes a packet"

    # What the learner's side decodes (aiortc's decoder: 48 kHz stereo) is the tutor's tone again.
    decoder = OpusDecoder()
    pcm = []
    for i, packet in enumerate(packets):
        for frame in decoder.decode(JitterFrame(data=bytes(packet), timestamp=i * 960)):
            pcm.append(frame.to_ndarray().reshape(-1, 2)[:, 0])
    heard = np.concatenate(pcm)[960 * 2 : 960 * 9].astype(np.float64)  # past the codec's start-up
    assert np.sqrt(np.mean(heard**2)) > 0.5 * 8000 / np.sqrt(2)
    spectrum = np.abs(np.fft.rfft(heard))
    assert abs(np.argmax(spectrum) * 48000 / len(heard) - 300) < 10, "the pitch survives encoding"


async def test_the_tutor_track_sends_40_ms_packets_that_decode_to_the_whole_voice() -> None:
    from aiortc.codecs.opus import OpusDecoder

    track = QuietAudioTrack(sample_rate=OUT_RATE, packet_ms=40)
    track.add_audio_bytes(tone(0.4, OUT_RATE, hz=300).tobytes())
    packets = [await track.recv() for _ in range(10)]
    assert [p.pts for p in packets] == [i * 2 * FRAME for i in range(10)], "one packet per 40 ms"

    decoder = OpusDecoder()
    decoded = []
    for i, packet in enumerate(packets):
        decoded += decoder.decode(JitterFrame(data=bytes(packet), timestamp=i * 1920))
    assert all(f.samples == 1920 for f in decoded), "each packet is 40 ms of the learner's playback"
    heard = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in decoded])[1920 : 1920 * 9]
    assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 0.5 * 8000 / np.sqrt(2)

    # The quiet tail is as long in time as with 20 ms packets, then the track falls silent.
    tail = [await track.recv_frame() for _ in range(QUIET_TAIL_MS // 40)]
    assert all(int(np.abs(f.to_ndarray()).max()) == 0 for f in tail)
    waiting = asyncio.create_task(track.recv_frame())
    await asyncio.sleep(0.2)
    assert not waiting.done(), "the track kept sending while the tutor was silent"
    waiting.cancel()


ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 opus/48000/2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
)


def test_the_answer_asks_the_browser_for_the_configured_packet_length() -> None:
    answer = with_ptime(ANSWER, 40)
    lines = answer.split("\r\n")
    audio = lines.index("m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8")
    data = lines.index("m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
    assert lines.count("a=ptime:40") == 1
    assert audio < lines.index("a=ptime:40") < data, "ptime belongs to the audio section only"
    assert answer.replace("a=ptime:40\r\n", "") == ANSWER, "nothing else in the answer changes"
    # 20 ms is every browser's default, so the answer is left as it was.
    assert with_ptime(ANSWER, 20) == ANSWER


class _Rtp:
    """What the jitter buffer reads of aiortc's RtpPacket once the receiver depayloaded it."""

    def __init__(self, seq: int, ticks: int = 1920) -> None:
        self.sequence_number = seq & 0xFFFF
        self.timestamp = (seq * ticks) & 0xFFFFFFFF
        self._data = seq.to_bytes(4, "big", signed=True)


def released(buffer: AudioJitterBuffer, seqs: list[int], ticks: int = 1920) -> list[list[int]]:
    """Feed packets in this order; for each, the sequence numbers the buffer handed on (in order)."""
    out = []
    for seq in seqs:
        pli, frame = buffer.add(_Rtp(seq, ticks))
        assert pli is False
        frames = [] if frame is None else frame.packets if isinstance(frame, AudioPackets) else [frame]
        out.append([int.from_bytes(f.data, "big", signed=True) for f in frames])
    return out


def test_the_learners_packets_reach_the_decoder_as_they_arrive_not_one_packet_late() -> None:
    # aiortc's own buffer hands on a packet only when the next one has arrived: the end of each utterance
    # reached the pipeline a packet late. Here each in-order packet goes on at once.
    assert released(AudioJitterBuffer(20), [100, 101, 102, 103]) == [[100], [101], [102], [103]]
    # Across the sequence number's wrap-around as well.
    assert released(AudioJitterBuffer(20), [65534, 65535, 65536, 65537]) == [[65534], [65535], [65536], [65537]]


def test_a_packet_that_comes_late_is_put_back_in_order() -> None:
    buffer = AudioJitterBuffer(40)
    assert released(buffer, [1, 3, 2, 4]) == [[1], [], [2, 3], [4]]
    # A duplicate or a packet already played is dropped, never played twice.
    assert released(buffer, [3, 5]) == [[], [5]]


def test_a_lost_packet_holds_the_audio_after_it_only_for_the_jitter_allowance() -> None:
    # 20 ms packets, 40 ms allowed: two packets wait behind the gap, the third arrival gives it up.
    buffer = AudioJitterBuffer(40)
    assert released(buffer, [1, 2, 4, 5, 6, 7], ticks=960) == [[1], [2], [], [], [4, 5, 6], [7]]
    assert buffer.lost == 1
    # The missing packet arriving after that is too late to play.
    assert released(buffer, [3, 8], ticks=960) == [[], [8]]

    # 40 ms packets with 20 ms allowed: one packet (a whole one) waits.
    buffer = AudioJitterBuffer(20)
    assert released(buffer, [1, 2, 4, 5], ticks=1920) == [[1], [2], [], [4, 5]]

    # No allowance: a gap is skipped at once.
    buffer = AudioJitterBuffer(0)
    assert released(buffer, [1, 3, 4], ticks=1920) == [[1], [3], [4]]


def test_a_restarted_stream_is_followed_not_taken_for_a_late_one() -> None:
    buffer = AudioJitterBuffer(20)
    assert released(buffer, [10, 11, 40000, 40001]) == [[10], [11], [40000], [40001]]


async def test_packets_released_together_are_all_decoded_in_order() -> None:
    frames = opus_packets(5)
    batch = AudioPackets(frames[1:])
    expected = [5000 + f.timestamp for f in frames[1:]]
    batch.timestamp += 5000  # what aiortc's receiver does to the frame it is handed: map its timestamp

    track_queue: asyncio.Queue[object] = asyncio.Queue()
    decoding = InlineAudioDecoding(queue.Queue(), track_queue)
    decoding.put((OPUS, frames[0]))
    decoding.put((OPUS, batch))
    decoded = [track_queue.get_nowait() for _ in range(track_queue.qsize())]
    assert len(decoded) == 5, "every packet of the batch was decoded"
    pts = [f.pts for f in decoded]
    assert pts[1:] == expected, "each keeps its place in time"


async def test_the_tutors_next_words_are_queued_before_the_last_ones_finish_playing() -> None:
    # pipecat's writer waits for each write to be played before the next: with the queue empty at that
    # moment, a busy event loop would put a silent packet into the tutor's sentence. Here the writer may
    # run LOOKAHEAD_PACKETS ahead of the packet being sent, and no further.
    track = QuietAudioTrack(sample_rate=OUT_RATE, packet_ms=40)
    packet = tone(0.04, OUT_RATE).tobytes()
    writes = [track.add_audio_bytes(packet) for _ in range(LOOKAHEAD_PACKETS + 2)]
    assert [w.done() for w in writes] == [True] * LOOKAHEAD_PACKETS + [False, False]

    await track.recv_frame()
    assert writes[LOOKAHEAD_PACKETS].done(), "one packet sent frees the writer for one more"
    assert not writes[-1].done()
    frames = [await track.recv_frame() for _ in range(LOOKAHEAD_PACKETS + 1)]
    assert all(w.done() for w in writes)
    assert all(int(np.abs(f.to_ndarray()).max()) > 1000 for f in frames), "no silence between the writes"
