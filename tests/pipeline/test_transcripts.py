"""The stored transcript holds every line the tutor finished saying, once and in order, whatever the timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import server.pipeline.tts as tts
from server.pipeline.models import SharedModels
from tests.pipeline.conftest import LessonFactory, is_final, words

pytestmark = pytest.mark.voice

HELLO = "Hello, let's start the session."
REPLY = "Iceland sits on the Mid-Atlantic Ridge, where two plates pull apart."
QUESTION = "Why does Iceland have so many volcanoes?"
# Longer than pipecat's TTSService.stop_frame_timeout_s (3 s): the voice goes quiet mid-greeting for longer
# than pipecat waits before it takes the utterance for finished.
STALL_SECS = 4.0


def about(topic: str) -> str:
    return f"Today we'll be talking about {topic}."


@pytest.fixture
def stalled_greeting(
    request: pytest.FixtureRequest, voice_models: SharedModels, monkeypatch: pytest.MonkeyPatch
) -> Iterator[threading.Event]:
    """Piper takes STALL_SECS over the greeting's second sentence, once (a CPU busy with other lessons).

    Each test names its own topic (`request.param`): a greeting's sentences, once synthesized, stay in the
    process's phrase cache, and a cached sentence takes no time at all.
    """
    voice, _ = voice_models.voice_for("female", "casual")  # the test companion's voice
    stalled_sentence = voice.voice.phonemize(about(request.param))
    real = tts.synthesize_sentence
    stalled = threading.Event()

    def synthesize(voice: tts.LoadedVoice, phonemes: list[str], length_scale: float, out_rate: int) -> bytes:
        if phonemes in stalled_sentence and not stalled.is_set():
            stalled.set()
            time.sleep(STALL_SECS)
        return real(voice, phonemes, length_scale, out_rate)

    monkeypatch.setattr(tts, "synthesize_sentence", synthesize)
    yield stalled


@pytest.mark.parametrize("stalled_greeting", ["Volcanoes of Iceland"], indirect=True)
async def test_a_greeting_whose_voice_stalls_is_shown_and_stored_whole(
    start_lesson: LessonFactory, stalled_greeting: threading.Event, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson([REPLY], companion={"topic": "Volcanoes of Iceland"})
    peer = await lesson.connect()

    greeting = await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    assert stalled_greeting.is_set(), "the greeting's voice did not stall: this test shows nothing"
    assert words(greeting["transcript"]) == words(f"{HELLO} {about('Volcanoes of Iceland')}")
    await peer.wait_for_quiet(quiet=0.8)

    said_at = time.monotonic()
    peer.send_pcm(speech(QUESTION), 16000)
    await peer.wait_for_message(is_final("assistant", "plates"), timeout=30, since=said_at)
    await lesson.hang_up()

    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"], stored
    assert words(stored[0]["text"]) == words(greeting["transcript"])
    assert "volcanoes" in words(stored[1]["text"])
    assert words(stored[2]["text"]) == words(REPLY)
    # The page's caption of the greeting was settled by its final line (no partial left after it).
    greeted = peer.message_time(lambda m: m is greeting)
    assert greeted is not None
    captions = [
        m
        for at, m in peer.message_log
        if at >= greeted and isinstance(m, dict) and m.get("type") == "transcript" and m["role"] == "assistant"
    ]
    assert all("session" not in words(m["transcript"]) for m in captions[1:]), captions


@pytest.mark.parametrize("stalled_greeting", ["The volcanoes of Iceland"], indirect=True)
async def test_a_greeting_the_learner_talks_over_keeps_what_was_heard_in_order(
    start_lesson: LessonFactory, stalled_greeting: threading.Event, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson([REPLY], companion={"topic": "The volcanoes of Iceland"})
    peer = await lesson.connect()

    # The first sentence plays, then the voice waits for the second: the learner starts talking there.
    heard = await peer.wait_for_audio(after=0, timeout=30)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)
    assert stalled_greeting.is_set() and peer.audio_seconds_after(heard) > 1.0
    said_at = time.monotonic()
    peer.send_pcm(speech(QUESTION), 16000)
    await peer.wait_for_message(is_final("user", "volcanoes"), timeout=30, since=said_at)
    await peer.wait_for_message(is_final("assistant", "plates"), timeout=30, since=said_at)
    await lesson.hang_up()

    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"], stored
    # What the learner heard of the greeting, before their own line; the sentence cut off is not in it.
    assert words(stored[0]["text"]) == words(HELLO)
    assert words(stored[2]["text"]) == words(REPLY)
