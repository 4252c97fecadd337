"""Voice fixtures: models loaded once per test session, an app whose LLM is a scripted server, a live lesson."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from quart import Quart
from quart.typing import TestAppProtocol, TestClientProtocol

from harness.rtc_client import LessonClient
from harness.scripted_llm import MODEL_ID, ScriptedLLM
from harness.speech import synthesize
from server.app import create_app
from server.lesson_recorder import stored_lessons
from server.pipeline.models import SharedModels, load_models
from server.pipeline.service import VoiceService
from server.settings import Settings, VoiceSettings
from server.state import get_state
from tests.conftest import create_companion, make_settings, register

TOPIC = "Neural networks"
FIRST_MESSAGE = f"Hello, let's start the session. Today we'll be talking about {TOPIC}."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="session")
def voice_models() -> Iterator[SharedModels]:
    """The speech models, loaded once for the whole session and shared by every test's app."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    models = load_models(VoiceSettings(), cpus)
    yield models
    models.close()


@pytest.fixture(scope="session")
def speech() -> Callable[[str], np.ndarray]:
    """Learner speech (16 kHz int16) made with piper at test time, cached per sentence."""
    cache: dict[str, np.ndarray] = {}

    def make(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = synthesize(text, sample_rate=16000, leading_silence=0.2, trailing_silence=1.2)
        return cache[text]

    return make


@dataclass
class VoiceLesson:
    """A signed-in learner with a companion and a started lesson on an app wired to a scripted LLM."""

    app: Quart
    client: TestClientProtocol
    lesson_id: int
    llm: ScriptedLLM | None
    stack: AsyncExitStack
    settings: Settings
    test_app: TestAppProtocol
    peers: list[LessonClient] = field(default_factory=list)
    running: bool = True

    async def post_offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        return await post_offer(self.client, self.lesson_id, offer)

    async def shutdown(self) -> None:
        """Stop the app as the server does on shutdown (its after_serving hooks run); once."""
        if self.running:
            self.running = False
            await self.test_app.shutdown()

    async def new_lesson(self, client: TestClientProtocol | None = None, **companion: Any) -> int:
        """Another lesson on this app: the same learner's (client None), or the learner signed in on `client`."""
        client = client or self.client
        body = await create_companion(client, **{"topic": TOPIC, **companion})
        response = await client.post(f"/api/companions/{body['id']}/lessons")
        assert response.status_code == 201, await response.get_data(as_text=True)
        lesson_id: int = (await response.get_json())["id"]
        return lesson_id

    async def another_learner(self, email: str, name: str = "Bob") -> tuple[TestClientProtocol, int]:
        """A second learner (their own cookies) signed up on this app, with a lesson of their own."""
        client = self.app.test_client()
        await register(client, email=email, name=name)
        return client, await self.new_lesson(client)

    def peer(self) -> LessonClient:
        """A peer closed when the test ends."""
        peer = LessonClient()
        self.peers.append(peer)
        return peer

    async def connect(self, keep_audio: bool = False) -> LessonClient:
        """Join the lesson as the page does (data channel + microphone, then the offer)."""
        peer = LessonClient(keep_audio=keep_audio)
        self.peers.append(peer)
        await peer.connect(self.post_offer)
        return peer

    async def lesson(self, lesson_id: int | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/api/lessons/{lesson_id or self.lesson_id}")
        assert response.status_code == 200
        body: dict[str, Any] = await response.get_json()
        return body

    async def wait_ended(self, within: float = 15.0) -> dict[str, Any]:
        """The lesson once its end is stored (a farewell is said first, so that can take a few seconds)."""
        deadline = time.monotonic() + within
        while True:
            stored = await self.lesson()
            if stored["ended_at"] is not None or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.1)

    async def wait_transcript(self, entries: int, within: float = 10.0) -> list[dict[str, Any]]:
        """The stored transcript once it has `entries` lines (each is stored just after it is said)."""
        deadline = time.monotonic() + within
        while True:
            transcript: list[dict[str, Any]] = (await self.lesson())["transcript"]
            if len(transcript) >= entries or time.monotonic() > deadline:
                return transcript
            await asyncio.sleep(0.1)

    async def hang_up(self) -> dict[str, Any]:
        response = await self.client.post(f"/api/lessons/{self.lesson_id}/end")
        body: dict[str, Any] = await response.get_json()
        assert response.status_code == 200, body
        return body


async def post_offer(client: TestClientProtocol, lesson_id: int, offer: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/api/lessons/{lesson_id}/offer", json=offer)
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 200, body
    return body


LessonFactory = Callable[..., Any]


@pytest.fixture
async def start_lesson(tmp_path: Path, voice_models: SharedModels) -> AsyncIterator[LessonFactory]:
    """`await start_lesson(replies, llm_url=None, **env)`: an app, a learner, a companion and a new lesson."""
    lessons: list[VoiceLesson] = []

    async def start(
        replies: list[str] | None = None,
        *,
        llm_url: str | None = None,
        companion: dict[str, Any] | None = None,
        **env: str,
    ) -> VoiceLesson:
        stack = AsyncExitStack()
        llm = None
        if llm_url is None:
            llm = ScriptedLLM(replies or ["Sure."])
            llm_url = llm.start()
            stack.callback(llm.stop)
        # Screening on, as served; its classifier off unless a test asks, so the scripted model sees only lessons.
        defaults = {"VOICE__LLM__TIMEOUT_SECS": "5", "VOICE__LLM__MAX_RETRIES": "0", "SAFETY__CLASSIFIER": "off"}
        settings = make_settings(
            tmp_path / f"app{len(lessons)}",
            VOICE__LLM__BASE_URL=llm_url,
            VOICE__LLM__MODEL=MODEL_ID,
            **{**defaults, **env},
        )
        app = create_app(settings)
        test_app = app.test_app()
        # Quart's test default (6 s) is shorter than a shutdown that ends a live lesson (up to 5 s) and then closes
        # the screening, materials, judge and recap workers, on a loaded 2-core machine.
        test_app.shutdown_timeout = 30  # type: ignore[attr-defined]
        await test_app.startup()
        state = get_state(app)
        # Share the session's models instead of loading them per test.
        extras = state.extras
        recorders = stored_lessons(
            state.db,
            extras["safety"],
            teaching=extras["teaching"],
            materials=extras["materials"],
            recaps=extras["recaps"],
        )
        state.voice = VoiceService(settings, recorders, models=voice_models)
        stack.push_async_callback(state.voice.close)
        client = app.test_client()
        await register(client)
        lesson = VoiceLesson(
            app=app, client=client, lesson_id=0, llm=llm, stack=stack, settings=settings, test_app=test_app
        )
        stack.push_async_callback(lesson.shutdown)
        lessons.append(lesson)
        lesson.lesson_id = await lesson.new_lesson(**(companion or {}))
        return lesson

    yield start
    for lesson in reversed(lessons):
        for peer in lesson.peers:
            await peer.close()
        await lesson.stack.aclose()


def is_final(role: str, contains: str | None = None) -> Callable[[Any], bool]:
    def match(message: Any) -> bool:
        return (
            isinstance(message, dict)
            and message.get("type") == "transcript"
            and message.get("transcriptType") == "final"
            and message.get("role") == role
            and (contains is None or all(w in words(message["transcript"]) for w in words(contains)))
        )

    return match


def is_status(status: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and m.get("type") == "status-update" and m.get("status") == status
