"""Recaps and memory in real spoken lessons (aiortc client, piper speech, the scripted model): a lesson that ends
gets its recap from its stored transcript, and the next lesson with the same companion greets the learner with
what the first one covered."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from server.recaps import RECAP_PROMPT, Recaps
from server.state import get_state
from tests.pipeline.conftest import LessonFactory, VoiceLesson, is_final, words

pytestmark = pytest.mark.voice

COVERED = "how a neuron weighs its inputs"
RECAP = {
    "covered": COVERED,
    "hard": "What the bias is for.",
    "questions": ["What does a weight do?", "What does the bias do?"],
    "facts": ["Asks good questions about neurons"],
}
QUESTIONS = ("What does a neuron do with its inputs?", "And what is the bias for?")


class Tutor:
    """Recap requests get the recap (and are kept); lesson requests a short reply."""

    def __init__(self) -> None:
        self.recap_requests: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        if messages and str(messages[0].get("content", "")).startswith(RECAP_PROMPT[:40]):
            self.recap_requests.append(messages)
            return json.dumps(RECAP)
        return "A neuron weighs each input and adds them up."


def recap_worker(lesson: VoiceLesson) -> Recaps:
    found: Recaps = get_state(lesson.app).extras["recaps"]
    return found


async def test_a_spoken_lesson_gets_its_recap_and_the_next_one_greets_with_what_it_covered(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    tutor = Tutor()
    lesson: VoiceLesson = await start_lesson(tutor)
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)
    heard = []
    for question in QUESTIONS:
        said_at = time.monotonic()
        peer.send_pcm(speech(question), 16000)
        message = await peer.wait_for_message(is_final("user"), timeout=30, since=said_at)
        heard.append(message["transcript"])
        await peer.wait_for_message(is_final("assistant", "weighs each input"), timeout=30, since=said_at)
        await peer.wait_for_quiet(quiet=0.8, timeout=30)
    ended = await lesson.hang_up()
    companion_id = ended["companion"]["id"]

    await recap_worker(lesson).idle()
    stored = await lesson.lesson()
    assert stored["recap"]["status"] == "ready"
    assert stored["recap"]["covered"] == COVERED
    assert stored["recap"]["questions"] == RECAP["questions"]
    # Built from the stored transcript: the learner's words as heard, the tutor's as said.
    [request] = tutor.recap_requests
    sent = request[-1]["content"]
    for line in stored["transcript"]:
        assert f"{'Learner' if line['role'] == 'user' else 'Tutor'}: {line['text']}" in sent
    assert all(f"Learner: {text}" in sent for text in heard)

    # The next lesson with the same companion starts from it.
    response = await lesson.client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201
    lesson.lesson_id = (await response.get_json())["id"]
    peer = await lesson.connect()
    greeting = await peer.wait_for_message(is_final("assistant", "welcome back"), timeout=30)
    assert words(greeting["transcript"]) == words(
        f"Welcome back! Last time we covered {COVERED}. Today we'll keep going with Neural networks."
    )
    await peer.wait_for_quiet(quiet=0.8, timeout=30)
    said_at = time.monotonic()
    peer.send_pcm(speech(QUESTIONS[1]), 16000)
    await peer.wait_for_message(is_final("assistant", "weighs each input"), timeout=30, since=said_at)
    # The model's instructions for it carry the first lesson's recap and the fact it kept.
    assert lesson.llm is not None
    system = lesson.llm.requests[-1]["messages"][0]["content"]
    assert COVERED in system and "What the bias is for" in system
    assert "- Asks good questions about neurons" in system
    transcript = await lesson.wait_transcript(1)
    assert words(transcript[0]["text"]) == words(greeting["transcript"])
