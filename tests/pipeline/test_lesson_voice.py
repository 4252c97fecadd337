"""A learner talks with a companion over real WebRTC: speech in, transcripts and the tutor's voice out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import update

from server.state import get_state
from server.store.models import Lesson
from tests.pipeline.conftest import FIRST_MESSAGE, TOPIC, LessonFactory, is_final, is_status, words

pytestmark = pytest.mark.voice

REPLY = "A neuron adds up its inputs and fires when the sum is large enough. Does that make sense?"


async def test_learner_and_tutor_talk_and_the_transcript_is_stored_in_order(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson([REPLY])
    peer = await lesson.connect()

    await peer.wait_for_message(is_status("in-progress"), timeout=10)
    greeting = await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    assert words(greeting["transcript"]) == words(FIRST_MESSAGE)
    assert peer.first_audio_after(0) is not None, "the tutor's greeting was not heard"
    await peer.wait_for_quiet(quiet=0.8)
    # While the tutor is silent the server sends no audio at all (as Opus DTX would), not packets of silence.
    received = len(peer.audio_frames)
    await asyncio.sleep(0.5)
    assert len(peer.audio_frames) == received, "the server kept sending audio while the tutor was silent"

    said_at = time.monotonic()
    peer.send_pcm(speech("What does a single neuron do?"), 16000)
    heard = await peer.wait_for_message(is_final("user", "neuron"), timeout=20, since=said_at)
    assert "single" in words(heard["transcript"])
    answer = await peer.wait_for_message(is_final("assistant", "fires"), timeout=20, since=said_at)
    assert words(answer["transcript"]) == words(REPLY)
    assert peer.audio_seconds_after(said_at) > 2.0, "the tutor's answer was not heard"

    speech_updates = [m for m in peer.messages if isinstance(m, dict) and m.get("type") == "speech-update"]
    assert {"type": "speech-update", "status": "started", "role": "assistant"} in speech_updates
    assert {"type": "speech-update", "status": "stopped", "role": "user"} in speech_updates

    # The LLM was taught the companion's topic and heard the learner.
    assert lesson.llm is not None
    request = lesson.llm.requests[-1]
    system = " ".join(str(m["content"]) for m in request["messages"] if m["role"] == "system")
    assert TOPIC in system
    assert any(m["role"] == "user" and "neuron" in words(str(m["content"])) for m in request["messages"])

    ended = await lesson.hang_up()
    assert ended["end_reason"] == "customer-ended-call"
    assert ended["ended_at"] is not None
    status = await peer.wait_for_message(is_status("ended"), timeout=5)
    assert status["endedReason"] == "customer-ended-call"

    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"]
    assert words(stored[0]["text"]) == words(FIRST_MESSAGE)
    assert "neuron" in words(stored[1]["text"])
    assert words(stored[2]["text"]) == words(REPLY)
    await asyncio.sleep(0)


def is_caption(message: object) -> bool:
    return isinstance(message, dict) and message.get("type") == "transcript" and message["role"] == "assistant"


LONG_REPLY = (
    "Neural networks are made of many small units called neurons. "
    "Each neuron takes numbers in, multiplies them by weights, and adds them up. "
    "If the total is large enough, the neuron passes a signal on to the next layer. "
    "By adjusting the weights over many examples, the network slowly learns a task. "
    "This is how computers learn to recognise cats in photographs."
)


async def test_learner_can_interrupt_the_tutor(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson([LONG_REPLY, "Of course, go ahead and ask."])
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    await peer.wait_for_quiet(quiet=0.8)

    asked_at = time.monotonic()
    peer.send_pcm(speech("How do neural networks work?"), 16000)
    await peer.wait_for_message(is_final("user", "neural networks"), timeout=20, since=asked_at)
    # Captions follow the tutor's audio: once the first words show, the ~20 s reply is being heard.
    await peer.wait_for_message(
        lambda m: is_caption(m) and "neurons" in words(m["transcript"]),
        timeout=20,
        since=asked_at,
    )
    talking_at = time.monotonic()
    await asyncio.sleep(1.0)

    interrupted_at = time.monotonic()
    peer.send_pcm(speech("Wait, can I ask something?"), 16000)
    await peer.wait_for_message(is_final("user", "ask something"), timeout=20, since=interrupted_at)
    cut = await peer.wait_for_message(is_final("assistant"), timeout=10, since=talking_at)
    assert "cats" not in words(cut["transcript"]), "the tutor finished its reply despite the interruption"
    await peer.wait_for_message(is_final("assistant", "go ahead"), timeout=20, since=interrupted_at)

    # What the learner heard of the long reply after talking over it: a moment, not the remaining ~15 s.
    second_started = peer.message_time(
        lambda m: m == {"type": "speech-update", "status": "started", "role": "assistant"}, since=interrupted_at
    )
    assert second_started is not None
    heard_after_interrupting = peer.audio_seconds_after(interrupted_at, until=second_started)
    assert heard_after_interrupting < 4.0

    await lesson.hang_up()
    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant", "user", "assistant"]
    assert "cats" not in words(stored[2]["text"])


async def test_lesson_stops_itself_at_its_duration_with_a_goodbye(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson(VOICE__MAX_LESSON_SECS="6")
    peer = await lesson.connect()
    greeting = await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    greeted_at = peer.message_time(lambda m: m is greeting)
    assert greeted_at is not None

    await peer.wait_for_message(is_final("assistant", "time is up"), timeout=20)
    status = await peer.wait_for_message(is_status("ended"), timeout=20)
    assert status["endedReason"] == "exceeded-max-duration"
    assert peer.audio_seconds_after(greeted_at) > 1.0, "the goodbye was not heard"

    stored = await lesson.wait_ended()
    assert stored["end_reason"] == "exceeded-max-duration"
    assert stored["ended_at"] is not None
    assert "goodbye" in words(stored["transcript"][-1]["text"])


async def test_a_lesson_that_connects_late_has_only_the_time_it_has_left(start_lesson: LessonFactory) -> None:
    """Its clock runs from when the lesson started (a reload, another window), cap or no cap."""
    lesson = await start_lesson(VOICE__MAX_LESSON_SECS="60")
    async with get_state(lesson.app).db.write() as session:
        started = datetime.now(UTC) - timedelta(seconds=54)
        await session.execute(update(Lesson).where(Lesson.id == lesson.lesson_id).values(started_at=started))
    peer = await lesson.connect()

    # About 6 s left: the greeting, then the goodbye, long before a fresh 60 s would be up.
    await peer.wait_for_message(is_final("assistant", "time is up"), timeout=30)
    status = await peer.wait_for_message(is_status("ended"), timeout=20)
    assert status["endedReason"] == "exceeded-max-duration"
    stored = await lesson.wait_ended()
    assert stored["end_reason"] == "exceeded-max-duration"
    assert stored["length_seconds"] < 60 + 20


async def test_closing_the_page_ends_the_lesson(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson()
    peer = await lesson.connect()
    await peer.wait_for_message(is_status("in-progress"), timeout=10)
    await peer.close()
    stored = await lesson.wait_ended()
    assert stored["end_reason"] in {"customer-ended-call", "customer-disconnected"}
