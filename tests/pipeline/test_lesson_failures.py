"""What a learner sees when things go wrong: someone else's lesson, a broken offer, an LLM that is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

from harness.rtc_client import make_offer
from tests.conftest import create_companion, register
from tests.pipeline.conftest import LessonFactory, is_final, is_status, post_offer, words

pytestmark = pytest.mark.voice

APOLOGY_WORDS = "sorry"


async def test_offer_for_another_learners_lesson_is_refused(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson()
    other = lesson.app.test_client()
    await register(other, email="bob@school.test", name="Bob")
    response = await other.post(f"/api/lessons/{lesson.lesson_id}/offer", json={"sdp": "v=0\r\n", "type": "offer"})
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "lesson_not_found"
    response = await other.post(f"/api/lessons/{lesson.lesson_id}/end")
    assert response.status_code == 404
    assert (await lesson.lesson())["ended_at"] is None


@pytest.mark.parametrize("sdp", ["hello", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=nonsense\r\n"])
async def test_malformed_sdp_is_a_400(start_lesson: LessonFactory, sdp: str) -> None:
    lesson = await start_lesson()
    response = await lesson.client.post(f"/api/lessons/{lesson.lesson_id}/offer", json={"sdp": sdp, "type": "offer"})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_sdp"
    # The server is fine: the learner can still connect properly.
    peer = await lesson.connect()
    await peer.wait_for_message(is_status("in-progress"), timeout=10)


async def test_a_full_server_says_it_is_busy_and_takes_the_lesson_once_a_slot_frees(
    start_lesson: LessonFactory,
) -> None:
    lesson = await start_lesson(VOICE__MAX_LIVE_LESSONS="1")
    first = await lesson.connect()
    await first.wait_for_message(is_status("in-progress"), timeout=10)
    bob, bobs_lesson = await lesson.another_learner("bob@school.test")

    response = await bob.post(f"/api/lessons/{bobs_lesson}/offer", json=await make_offer())
    assert response.status_code == 503
    error = (await response.get_json())["error"]
    assert error["code"] == "voice_busy" and "busy" in error["message"]
    # The lesson already running is not disturbed by the refusal.
    assert first.connection_state == "connected"
    assert (await lesson.lesson())["ended_at"] is None

    await lesson.hang_up()
    second = lesson.peer()
    await second.connect(partial(post_offer, bob, bobs_lesson))
    await second.wait_for_message(is_status("in-progress"), timeout=10)


async def test_an_ended_lesson_cannot_be_reopened(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson()
    ended = await lesson.hang_up()
    assert ended["end_reason"] == "customer-ended-call"
    response = await lesson.client.post(
        f"/api/lessons/{lesson.lesson_id}/offer", json={"sdp": "v=0\r\n", "type": "offer"}
    )
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "lesson_ended"


async def test_an_llm_that_fails_mid_lesson_gives_a_spoken_apology_in_a_learners_words(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson(["Sure."])
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    await peer.wait_for_quiet(quiet=0.8)

    assert lesson.llm is not None
    lesson.llm.fail_with_status = 500  # the model answered at the start, and fails from now on
    said_at = time.monotonic()
    peer.send_pcm(speech("What is a neuron?"), 16000)
    error = await peer.wait_for_message(
        lambda m: isinstance(m, dict) and m.get("type") == "error", timeout=30, since=said_at
    )
    assert error["error"]["code"] == "llm-unavailable"
    # The learner is not handed the operator's instructions (those go to the log and `tutor doctor`).
    message = error["error"]["message"]
    assert "try again" in message.lower()
    for operator_words in (lesson.llm.base_url, "TUTOR_", "ollama", "voice.llm"):
        assert operator_words not in message
    apology = await peer.wait_for_message(is_final("assistant", APOLOGY_WORDS), timeout=10, since=said_at)
    heard_at = peer.message_time(lambda m: m is apology)
    assert heard_at is not None
    await peer.wait_for_audio(after=said_at, timeout=10)

    # One failed turn does not end the lesson.
    assert not any(isinstance(m, dict) and m.get("status") == "ended" for m in peer.messages)
    assert (await lesson.lesson())["ended_at"] is None
    stored = await lesson.wait_transcript(3)
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"]
    assert APOLOGY_WORDS in words(stored[-1]["text"])

    # The failure made the server check its model again: the next lesson is refused before it counts.
    companion = await create_companion(lesson.client, topic="Neurons")
    deadline = time.monotonic() + 15
    while True:
        response = await lesson.client.post(f"/api/companions/{companion['id']}/lessons")
        if response.status_code != 201 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    assert response.status_code == 503
    assert (await response.get_json())["error"]["code"] == "llm_unavailable"


async def test_llm_that_keeps_failing_ends_the_lesson(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson(["Sure."], VOICE__LLM_FAILURES_BEFORE_END="1")
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    await peer.wait_for_quiet(quiet=0.8)
    assert lesson.llm is not None
    lesson.llm.fail_with_status = 503
    peer.send_pcm(speech("What is a neuron?"), 16000)
    status = await peer.wait_for_message(is_status("ended"), timeout=30)
    assert status["endedReason"] == "llm-unavailable"
    assert (await lesson.wait_ended())["end_reason"] == "llm-unavailable"


async def test_trickled_ice_candidates_go_to_the_lessons_connection(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson()
    peer = await lesson.connect()
    await peer.wait_for_message(is_status("in-progress"), timeout=10)
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdpMid": "0"}
    url = f"/api/lessons/{lesson.lesson_id}/offer"
    response = await lesson.client.patch(url, json={"pc_id": peer.pc_id, "candidates": [candidate]})
    assert response.status_code == 204
    response = await lesson.client.patch(url, json={"pc_id": "someone-else", "candidates": [candidate]})
    assert response.status_code == 404
    response = await lesson.client.patch(
        url, json={"pc_id": peer.pc_id, "candidates": [{"candidate": "nonsense", "sdpMid": "0"}]}
    )
    assert response.status_code == 400
    # The lesson carries on.
    assert peer.connection_state == "connected"
