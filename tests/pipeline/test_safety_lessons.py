"""Safety screening in real spoken lessons: a harmful tutor reply is replaced before it is heard, a learner who says
something about self-harm is answered with the school's support message, and both are flagged and alerted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from harness.rtc_client import LessonClient
from server.pipeline.models import SharedModels
from server.pipeline.phrases import sentences
from server.safety import CLASSIFIER_PROMPT
from server.settings import Settings
from server.state import get_state
from server.store.models import User
from tests.pipeline.conftest import TOPIC, LessonFactory, VoiceLesson, is_final, words
from tests.test_alerts import Inbox, free_port
from tests.test_safety import School, alert_recipients, app_safety, make_school, stored_flags

pytestmark = pytest.mark.voice

REDIRECT = f"Let's get back to our lesson on {TOPIC}."
SUPPORT = Settings().safety.support_message
HARMFUL_REPLY = "Neural networks learn from examples. You are stupid and nobody likes you, so stop asking."


class Tutor:
    """The scripted model's answers: classification requests get "none", lesson requests the next reply."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.lesson_requests = 0

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        if messages and messages[0].get("content") == CLASSIFIER_PROMPT:
            return '{"category": "none"}'
        self.lesson_requests += 1
        return self.replies[min(self.lesson_requests, len(self.replies)) - 1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def screened_lesson(start_lesson: LessonFactory, smtp_port: int, tutor: Tutor) -> tuple[VoiceLesson, School]:
    """A lesson of Ann's, who is in Tess's class, on an app that screens its lessons and e-mails its alerts."""
    lesson: VoiceLesson = await start_lesson(
        tutor,
        ALERTS__SMTP_HOST="127.0.0.1",
        ALERTS__SMTP_PORT=str(smtp_port),
        ALERTS__SMTP_SECURITY="none",
        SERVER__PUBLIC_URL="https://tutor.school.test",
        SAFETY__CLASSIFIER="model",
    )
    state = get_state(lesson.app)
    async with state.db.read() as session:
        learner_id = await session.scalar(select(User.id).where(User.email == "ann@school.test"))
    assert learner_id is not None
    return lesson, await make_school(lesson.app, learner_id)


async def greeted(lesson: VoiceLesson) -> LessonClient:
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)
    return peer


def captions(peer: LessonClient) -> list[str]:
    return [
        m["transcript"]
        for m in peer.messages
        if isinstance(m, dict) and m.get("type") == "transcript" and m.get("role") == "assistant"
    ]


async def test_a_harmful_tutor_reply_is_replaced_before_it_is_heard_flagged_and_alerted(
    start_lesson: LessonFactory,
    voice_models: SharedModels,
    speech: Callable[[str], np.ndarray],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    tutor = Tutor(HARMFUL_REPLY)
    lesson, school = await screened_lesson(start_lesson, port, tutor)
    peer = await greeted(lesson)

    said_at = time.monotonic()
    peer.send_pcm(speech("What is a neural network?"), 16000)
    heard = await peer.wait_for_message(is_final("user", "neural network"), timeout=30, since=said_at)
    answer = await peer.wait_for_message(is_final("assistant", "back to our lesson"), timeout=30, since=said_at)
    first_audio = peer.first_audio_after(peer.message_time(lambda m: m is heard) or said_at)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)

    # The learner heard and read the reply's harmless start, then the redirect; never the rest.
    assert words(answer["transcript"]) == words(f"Neural networks learn from examples. {REDIRECT}")
    assert all("stupid" not in words(caption) for caption in captions(peer)), captions(peer)
    assert first_audio is not None and peer.audio_seconds_after(first_audio) > 3.0
    assert tutor.lesson_requests == 1
    ended = await lesson.hang_up()
    assert ended["end_reason"] == "customer-ended-call"
    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"]
    assert words(stored[2]["text"]) == words(answer["transcript"])

    # The flag holds what the model wrote, which nobody heard.
    await app_safety(lesson.app).idle()
    # The learner's question was classified by the same model, after the reply to it (never queued ahead of it).
    assert lesson.llm is not None
    asked = ["classify" if r["messages"][0]["content"] == CLASSIFIER_PROMPT else "reply" for r in lesson.llm.requests]
    assert asked == ["reply", "classify"]
    response = await school.teacher.get("/api/safety/flags")
    [flag] = (await response.get_json())["flags"]
    assert {k: flag[k] for k in ("role", "text", "category", "severity", "source", "action")} == {
        "role": "assistant",
        "text": HARMFUL_REPLY,
        "category": "abuse",
        "severity": "high",
        "source": "local",
        "action": "replaced",
    }
    assert flag["lesson_id"] == lesson.lesson_id and flag["learner"]["name"] == "Ann"
    assert await alert_recipients(lesson.app, flag["id"]) == {school.teacher_id, school.admin_id}
    assert (await (await school.teacher.get("/api/safety/alerts")).get_json())["unread"] == 1

    received = await inbox.wait_for(2)
    assert sorted(envelope.rcpt_tos[0] for envelope, _ in received) == ["ada@school.test", "tess@school.test"]
    subject = received[0][1]["Subject"]
    assert subject == "Safety alert: abuse or bullying in a lesson with Ann"
    assert "stupid" not in received[0][1].as_string()


async def test_a_learner_who_speaks_of_self_harm_hears_the_support_message_and_staff_are_alerted(
    start_lesson: LessonFactory,
    voice_models: SharedModels,
    speech: Callable[[str], np.ndarray],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    tutor = Tutor("Let's keep going with neural networks.")
    lesson, school = await screened_lesson(start_lesson, port, tutor)
    peer = await greeted(lesson)

    said_at = time.monotonic()
    peer.send_pcm(speech("I want to kill myself."), 16000)
    heard = await peer.wait_for_message(is_final("user", "kill myself"), timeout=30, since=said_at)
    support = await peer.wait_for_message(is_final("assistant", "trusted adult"), timeout=30, since=said_at)
    assert words(support["transcript"]) == words(SUPPORT)
    assert len(sentences(SUPPORT)) == 3 and peer.audio_seconds_after(said_at) > 5.0
    # The model was never asked to answer it.
    assert tutor.lesson_requests == 0
    await lesson.hang_up()
    stored = (await lesson.lesson())["transcript"]
    assert [(t["role"], words(t["text"])) for t in stored[1:]] == [
        ("user", words(heard["transcript"])),
        ("assistant", words(SUPPORT)),
    ]

    await app_safety(lesson.app).idle()
    [flag] = await stored_flags(lesson.app)
    assert (flag.role, flag.text, flag.category, flag.severity, flag.source, flag.action) == (
        "user",
        heard["transcript"],
        "self_harm",
        "high",
        "local",
        "support",
    )
    assert await alert_recipients(lesson.app, flag.id) == {school.teacher_id, school.admin_id}
    admin_alerts = await (await school.admin.get("/api/safety/alerts")).get_json()
    assert [a["flag"]["id"] for a in admin_alerts["alerts"]] == [flag.id]

    received = await inbox.wait_for(2)
    assert sorted(envelope.rcpt_tos[0] for envelope, _ in received) == ["ada@school.test", "tess@school.test"]
    _, message = received[0]
    assert message["Subject"] == "Safety alert: self-harm in a lesson with Ann"
    text = message.as_string()
    assert "https://tutor.school.test" in text and "kill" not in text.lower()
