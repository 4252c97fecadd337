"""Teaching styles in real spoken lessons: a socratic tutor whose model blurts out the answer to the learner's sum
is heard asking a guiding question instead, and confirms the answer once the learner works it out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from server.pipeline.models import SharedModels
from server.settings import Settings
from tests.pipeline.conftest import LessonFactory, is_final, words

pytestmark = pytest.mark.voice

TEACHING = Settings().voice.teaching
GUIDING = TEACHING.socratic_guiding_question.replace("{problem}", "12 times 7")


class Blurter:
    """A model that hands over the answer whatever it is told; it confirms the learner's answer the same way."""

    def __init__(self) -> None:
        self.replies = ["12 times 7 is 84. Well done for asking!", "Yes, 84 is right! You worked it out."]
        self.asked = 0

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.asked += 1
        return self.replies[min(self.asked, len(self.replies)) - 1]


def captions(messages: list[Any]) -> list[str]:
    return [
        m["transcript"]
        for m in messages
        if isinstance(m, dict) and m.get("type") == "transcript" and m.get("role") == "assistant"
    ]


async def test_a_socratic_tutor_asks_a_guiding_question_instead_of_handing_over_the_answer(
    start_lesson: LessonFactory, voice_models: SharedModels, speech: Callable[[str], np.ndarray]
) -> None:
    model = Blurter()
    lesson = await start_lesson(model, companion={"subject": "maths", "topic": "Times tables", "teaching": "socratic"})
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)

    said_at = time.monotonic()
    peer.send_pcm(speech("What is twelve times seven?"), 16000)
    await peer.wait_for_message(is_final("user", "what is times"), timeout=30, since=said_at)
    answer = await peer.wait_for_message(is_final("assistant"), timeout=30, since=said_at)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)

    # The model was told how to teach, and still blurted it out; the learner heard the guiding question only.
    assert lesson.llm is not None
    assert TEACHING.socratic in lesson.llm.requests[0]["messages"][0]["content"]
    assert model.asked == 1
    assert words(answer["transcript"]) == words(GUIDING)
    assert all("84" not in c and "eighty" not in c.lower() for c in captions(peer.messages)), captions(peer.messages)

    # Once the learner gives the answer themselves, the tutor may confirm it.
    said_at = time.monotonic()
    peer.send_pcm(speech("Is it eighty four?"), 16000)
    await peer.wait_for_message(is_final("user", "is it"), timeout=30, since=said_at)
    confirmed = await peer.wait_for_message(is_final("assistant", "right"), timeout=30, since=said_at)
    assert "84" in confirmed["transcript"]

    await lesson.hang_up()
    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant", "user", "assistant"]
    assert words(stored[2]["text"]) == words(GUIDING)
