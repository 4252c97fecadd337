"""The lesson transport's audio path: what the learner's browser is sent, and what the pipeline hears."""

from __future__ import annotations

import asyncio
import fractions
import queue

import numpy as np
from aiortc.codecs import get_capabilities
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame, AudioResampler

from server.pipeline.transport import (
    QUIET_TAIL_FRAMES,
    InlineAudioDecoding,
    LearnerAudio,
    QuietAudioTrack,
)

OUT_RATE = 24000
FRAME = OUT_RATE // 50  # samples in one 20 ms frame


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def test_the_tutor_track_plays_queued_audio_then_falls_silent_without_sending() -> None:
    track = QuietAudioTrack(sample_rate=OUT_RATE)
    # 50 ms of speech: not a whole number of 20 ms frames, so the last frame is padded, never refused.
    played = track.add_audio_bytes(tone(0.05, OUT_RATE).tobytes())

    frames = [await track.recv_frame() for _ in range(3 + QUIET_TAIL_FRAMES)]
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


async def test_the_learners_packets_are_decoded_in_order_as_they_arrive_and_a_stop_still_ends_the_track() -> None:
    opus = next(c for c in get_capabilities("audio").codecs if c.name == "opus")
    encoder = OpusEncoder()
    pcm = tone(0.2, 48000, hz=300)
    encoded = []
    for i in range(10):
        frame = AudioFrame.from_ndarray(pcm[None, i * 960 : (i + 1) * 960], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        encoded.extend(JitterFrame(data=p, timestamp=timestamp) for p in payloads)

    thread_queue: queue.Queue[object] = queue.Queue()
    track_queue: asyncio.Queue[object] = asyncio.Queue()
    decoding = InlineAudioDecoding(thread_queue, track_queue)
    for packet in encoded:
        decoding.put((opus, packet))
    decoded = [track_queue.get_nowait() for _ in range(track_queue.qsize())]
    assert len(decoded) == len(encoded), "every packet is decoded at once, with no thread in between"
    assert all(isinstance(f, AudioFrame) and f.samples == 960 for f in decoded)
    assert [f.pts for f in decoded] == sorted(f.pts for f in decoded)
    assert np.abs(np.concatenate([f.to_ndarray().reshape(-1) for f in decoded[2:]])).max() > 1000

    # The receiver's stop is passed to aiortc's parked decoder thread, which ends the track.
    decoding.put(None)
    assert thread_queue.get_nowait() is None


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
