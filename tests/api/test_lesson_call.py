"""A lesson's call set-up tells the page how long the lesson has left, by the same rule the pipeline keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import update

from server.settings import Settings
from server.state import get_state
from server.store.models import Lesson
from tests.conftest import create_companion, make_settings, register

CAP_SECS = 90


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The shared fixture's settings (SQLite and PostgreSQL), with every lesson capped at CAP_SECS."""
    extra = {"DATABASE__URL": database_url} if database_url else {}
    return make_settings(tmp_path, VOICE__MAX_LESSON_SECS=str(CAP_SECS), **extra)


async def new_lesson(client: Client, duration: int = 15) -> int:
    await register(client)
    companion = await create_companion(client, duration=duration)
    response = await client.post(f"/api/companions/{companion['id']}/lessons")
    assert response.status_code == 201
    lesson_id: int = (await response.get_json())["id"]
    return lesson_id


async def call(client: Client, lesson_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/lessons/{lesson_id}/call")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def test_the_call_counts_down_from_the_capped_length_not_the_companions(client: Client) -> None:
    lesson_id = await new_lesson(client, duration=15)
    body = await call(client, lesson_id)
    assert CAP_SECS - 5 < body["seconds_left"] <= CAP_SECS
    assert body["assistant"]["maxDurationSeconds"] == CAP_SECS


async def test_asking_again_later_gives_only_the_time_left(client: Client) -> None:
    lesson_id = await new_lesson(client)
    db = get_state(client.app).db
    async with db.write() as session:
        earlier = datetime.now(UTC) - timedelta(seconds=60)
        await session.execute(update(Lesson).where(Lesson.id == lesson_id).values(started_at=earlier))
    body = await call(client, lesson_id)
    assert CAP_SECS - 60 - 5 < body["seconds_left"] <= CAP_SECS - 60

    async with db.write() as session:
        long_ago = datetime.now(UTC) - timedelta(seconds=CAP_SECS + 30)
        await session.execute(update(Lesson).where(Lesson.id == lesson_id).values(started_at=long_ago))
    assert (await call(client, lesson_id))["seconds_left"] == 0
