"""How a live lesson ends without the learner hanging up: a server that shuts down, and a learner gone silent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from harness.live_server import LiveServer
from harness.rtc_client import LessonClient
from harness.scripted_llm import MODEL_ID, ScriptedLLM
from server.app import create_app
from tests.conftest import PASSWORD, companion_body
from tests.pipeline.conftest import LessonFactory, is_final, is_status, words

pytestmark = pytest.mark.voice

ANN = {"email": "ann@school.test", "password": PASSWORD}
CHECK_IN = "Are you still there? Say something when you're ready to go on."


async def test_a_lesson_live_when_the_server_shuts_down_ends_with_its_own_reason(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson()
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)

    await lesson.shutdown()
    status = await peer.wait_for_message(is_status("ended"), timeout=10)
    assert status["endedReason"] == "server-shutdown"
    # Stored before the server let go of its database: the server, started again, says so.
    app = create_app(lesson.settings)
    async with app.test_app():
        client = app.test_client()
        assert (await client.post("/api/auth/login", json=ANN)).status_code == 200
        stored = await (await client.get(f"/api/lessons/{lesson.lesson_id}")).get_json()
    assert stored["end_reason"] == "server-shutdown" and stored["ended_at"] is not None
    assert words(stored["transcript"][0]["text"]) == words("Hello, let's start the session.") + words(
        "Today we'll be talking about Neural networks."
    )


async def test_sigterm_ends_the_live_lessons_of_a_real_server(tmp_path: Path) -> None:
    """`tutor serve` stopped by its service manager (SIGTERM) runs its shutdown, ending live lessons."""
    with ScriptedLLM(["Sure."]) as llm:
        env = {"TUTOR_VOICE__LLM__BASE_URL": llm.base_url, "TUTOR_VOICE__LLM__MODEL": MODEL_ID}
        server = LiveServer(tmp_path, env)
        await asyncio.to_thread(server.start)
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                register = {**ANN, "name": "Ann"}
                assert (await http.post("/api/auth/register", json=register)).status_code == 201
                companion = (await http.post("/api/companions", json=companion_body())).json()
                lesson_id = (await http.post(f"/api/companions/{companion['id']}/lessons")).json()["id"]

                async def post_offer(offer: dict[str, Any]) -> dict[str, Any]:
                    response = await http.post(f"/api/lessons/{lesson_id}/offer", json=offer)
                    assert response.status_code == 200, response.text
                    answer: dict[str, Any] = response.json()
                    return answer

                async with LessonClient() as peer:
                    await peer.connect(post_offer)
                    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
                    code = await asyncio.to_thread(server.terminate)
                    status = await peer.wait_for_message(is_status("ended"), timeout=5)
        finally:
            server.stop()
    assert code == 0, server.tail()
    assert status["endedReason"] == "server-shutdown"

    again = LiveServer(tmp_path, {"TUTOR_VOICE__PRELOAD": "false"}, log_path=tmp_path / "again.log")
    await asyncio.to_thread(again.start)
    try:
        async with httpx.AsyncClient(base_url=again.base_url) as http:
            assert (await http.post("/api/auth/login", json=ANN)).status_code == 200
            stored = (await http.get(f"/api/lessons/{lesson_id}")).json()
    finally:
        again.stop()
    assert stored["end_reason"] == "server-shutdown" and stored["ended_at"] is not None


def is_silence_warning(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "silence-warning"


async def test_a_silent_learner_is_asked_before_the_lesson_ends(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson(VOICE__SILENCE_TIMEOUT_SECS="6", VOICE__SILENCE_WARNING_SECS="3")
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)

    warning = await peer.wait_for_message(is_silence_warning, timeout=20)
    warned_at = peer.message_time(lambda m: m is warning)
    assert warning["secondsLeft"] == 3
    # The tutor asks out loud, and the page gets the question as the tutor's line like any other.
    asked = await peer.wait_for_message(is_final("assistant", "still there"), timeout=20, since=warned_at)
    assert words(asked["transcript"]) == words(CHECK_IN)
    assert warned_at is not None and peer.audio_seconds_after(warned_at) > 1.0, "the check-in was not heard"

    status = await peer.wait_for_message(is_status("ended"), timeout=20, since=warned_at)
    assert status["endedReason"] == "silence-timed-out"
    stored = await lesson.wait_ended()
    assert stored["end_reason"] == "silence-timed-out"
    assert [t["role"] for t in stored["transcript"]] == ["assistant", "assistant"]
    assert words(stored["transcript"][-1]["text"]) == words(CHECK_IN)


async def test_speaking_after_the_check_in_keeps_the_lesson_going(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson(
        ["Good, let's go on."], VOICE__SILENCE_TIMEOUT_SECS="10", VOICE__SILENCE_WARNING_SECS="5"
    )
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=20)
    warning = await peer.wait_for_message(is_silence_warning, timeout=20)
    warned_at = peer.message_time(lambda m: m is warning)
    assert warned_at is not None

    peer.send_pcm(speech("Yes, I am still here."), 16000)
    await peer.wait_for_message(is_final("user", "still here"), timeout=20, since=warned_at)
    await peer.wait_for_message(is_final("assistant", "go on"), timeout=20, since=warned_at)
    # Well past the end the warning announced, the lesson goes on.
    await asyncio.sleep(max(0.0, warned_at + 5 + 1 - time.monotonic()))
    assert not any(is_status("ended")(m) for m in peer.messages)
    assert (await lesson.lesson())["ended_at"] is None
