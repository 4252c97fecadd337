"""Lessons a server process leaves open: ended when it dies (by whoever starts or sweeps next) or shuts down."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from quart import Quart

from harness.live_server import LiveServer
from server import app as app_module
from server import instances, lessons
from server.app import create_app
from server.settings import Settings
from server.state import get_state
from tests.api.test_vapi_webhook import hosted_settings
from tests.conftest import PASSWORD, companion_body, create_companion, make_settings, register

# Long enough that no background heartbeat runs during a test: each test moves heartbeats itself.
QUIET = {"SERVER__HEARTBEAT_SECS": "3600"}


def quiet_settings(tmp_path: Path, database_url: str, **env: str) -> Settings:
    if database_url:
        env["DATABASE__URL"] = database_url
    return make_settings(tmp_path, **QUIET, **env)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Quart]:
    """One more server process on the same database, for the length of the block."""
    app = create_app(settings)
    async with app.test_app():
        yield app


async def sign_in(app: Quart, email: str = "ann@school.test") -> Any:
    client = app.test_client()
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return client


async def start_lesson(client: Any, companion_id: int) -> int:
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    lesson_id: int = (await response.get_json())["id"]
    return lesson_id


async def lesson(client: Any, lesson_id: int) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/lessons/{lesson_id}")).get_json()
    return body


async def go_silent(app: Quart) -> None:
    """Make the app's process look dead to the others: its last heartbeat long ago."""
    keeper = get_state(app).extras[instances.EXTRAS_KEY]
    await instances.heartbeat(get_state(app).db, keeper.instance, now=datetime.now(UTC) - timedelta(days=1))


async def test_a_silent_process_s_lessons_end_when_another_starts_and_a_live_one_s_do_not(tmp_path, database_url):
    settings = quiet_settings(tmp_path, database_url)
    async with serving(settings) as first:
        ann = first.test_client()
        await register(ann)
        companion = await create_companion(ann)
        held_by_first = await start_lesson(ann, companion["id"])
        async with serving(settings) as second:
            # The first process still beats: the second one's start leaves its lesson alone.
            assert (await lesson(ann, held_by_first))["ended_at"] is None
            assert (await ann.get(f"/api/lessons/{held_by_first}/call")).status_code == 200
            held_by_second = await start_lesson(await sign_in(second), companion["id"])

            await go_silent(first)
            async with serving(settings):
                ended = await lesson(ann, held_by_first)
                assert ended["end_reason"] == "server-restart"
                assert ended["ended_at"] is not None and ended["length_seconds"] == 0
                refused = await ann.get(f"/api/lessons/{held_by_first}/call")
                assert refused.status_code == 409
                assert (await refused.get_json())["error"]["code"] == "lesson_ended"
                # The second process is alive: its lesson goes on.
                assert (await lesson(ann, held_by_second))["ended_at"] is None
                assert (await ann.get(f"/api/lessons/{held_by_second}/call")).status_code == 200


async def test_a_sweep_ends_a_dead_process_s_lessons_at_its_last_heartbeat(tmp_path, database_url):
    settings = quiet_settings(tmp_path, database_url)
    async with serving(settings) as first, serving(settings) as second:
        ann = first.test_client()
        await register(ann)
        companion = await create_companion(ann)
        lesson_id = await start_lesson(ann, companion["id"])
        started = datetime.fromisoformat((await lesson(ann, lesson_id))["started_at"])
        keeper = get_state(first).extras[instances.EXTRAS_KEY]
        db = get_state(second).db
        # It beat two minutes after the lesson started, then nothing for a day.
        await instances.heartbeat(db, keeper.instance, now=started + timedelta(minutes=2))
        now = started + timedelta(days=1)
        await instances.heartbeat(db, get_state(second).extras[instances.EXTRAS_KEY].instance, now=now)

        assert await instances.sweep(db, settings.server.heartbeat_secs, now=now) == [lesson_id]
        ended = await lesson(ann, lesson_id)
        assert ended["end_reason"] == "server-restart" and ended["length_seconds"] == 120
        assert await instances.sweep(db, settings.server.heartbeat_secs, now=now) == []


async def test_the_process_that_runs_a_lesson_holds_it_whichever_created_it(tmp_path, database_url):
    settings = quiet_settings(tmp_path, database_url)
    async with serving(settings) as creator, serving(settings) as runner:
        ann = creator.test_client()
        user = await register(ann)
        companion = await create_companion(ann)
        lesson_id = await start_lesson(ann, companion["id"])
        runner_id = get_state(runner).extras[instances.EXTRAS_KEY].id
        await lessons.get_live_lesson(get_state(runner).db, lesson_id, user["id"], holder=runner_id)

        await go_silent(creator)
        assert await instances.sweep(get_state(runner).db, settings.server.heartbeat_secs) == []
        assert (await lesson(ann, lesson_id))["ended_at"] is None
        await go_silent(runner)
        assert await instances.sweep(get_state(creator).db, settings.server.heartbeat_secs) == [lesson_id]


async def test_a_clean_shutdown_ends_its_own_lessons_with_server_shutdown(tmp_path, database_url):
    settings = quiet_settings(tmp_path, database_url)
    async with serving(settings) as staying:
        ann = staying.test_client()
        await register(ann)
        companion = await create_companion(ann)
        kept_open = await start_lesson(ann, companion["id"])
        async with serving(settings) as leaving:
            closed = await start_lesson(await sign_in(leaving), companion["id"])
        assert (await lesson(ann, closed))["end_reason"] == "server-shutdown"
        assert (await lesson(ann, kept_open))["ended_at"] is None


async def test_a_shutdown_step_that_hangs_is_given_up_and_the_lessons_are_still_ended(
    tmp_path, database_url, monkeypatch, caplog
):
    """A part that never finishes closing is logged and left behind; the steps after it still run."""
    monkeypatch.setattr(app_module, "SHUTDOWN_STEP_LIMIT_SECS", 0.5)
    settings = quiet_settings(tmp_path, database_url)
    async with serving(settings) as staying:
        ann = staying.test_client()
        await register(ann)
        companion = await create_companion(ann)
        leaving = create_app(settings)
        with caplog.at_level(logging.WARNING, logger="server.app"):
            async with leaving.test_app():
                closed = await start_lesson(await sign_in(leaving), companion["id"])
                voice = get_state(leaving).voice
                assert voice is not None
                close_voice = voice.close

                async def close_and_hang() -> None:
                    await close_voice()
                    await asyncio.Event().wait()

                monkeypatch.setattr(voice, "close", close_and_hang)
                started = time.perf_counter()
        took = time.perf_counter() - started
        # No offer was made, so the voice service never ran this lesson: only the step after the hung one ends it.
        assert (await lesson(ann, closed))["end_reason"] == "server-shutdown"
    assert took < 5, f"the shutdown took {took:.1f} s"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "shutdown: ending the live lessons did not finish in 0.5 s; going on without it"
    ]


async def test_hosted_lessons_have_no_holder_and_are_never_ended_by_a_restart(tmp_path, database_url):
    settings = hosted_settings(tmp_path, database_url, **QUIET)
    async with serving(settings) as app:
        ann = app.test_client()
        await register(ann)
        # In hosted mode the voices are vapi.voices' entries.
        companion = await create_companion(ann, voice="female.casual")
        lesson_id = await start_lesson(ann, companion["id"])
        await go_silent(app)
    # Vapi, not this process, runs a hosted call: neither the shutdown nor the next start ends it.
    async with serving(settings) as restarted:
        assert (await lesson(await sign_in(restarted), lesson_id))["ended_at"] is None


def test_a_killed_server_s_lesson_ends_when_the_server_comes_back(tmp_path):
    """The issue's case: kill -9, start again, and the lesson is over (SQLite; a real `tutor serve`)."""
    env = {"TUTOR_SERVER__HEARTBEAT_SECS": "0.5", "TUTOR_VOICE__PRELOAD": "false"}
    body = {"email": "ann@school.test", "password": PASSWORD, "name": "Ann"}
    first = LiveServer(tmp_path / "data", env, log_path=tmp_path / "first.log")
    with httpx.Client(base_url=first.start(), timeout=30) as http:
        assert http.post("/api/auth/register", json=body).status_code == 201
        companion = http.post("/api/companions", json=companion_body()).json()
        lesson_id = http.post(f"/api/companions/{companion['id']}/lessons").json()["id"]
        assert http.get(f"/api/lessons/{lesson_id}/call").status_code == 200
    assert first._proc is not None
    os.kill(first._proc.pid, signal.SIGKILL)
    first._proc.wait(timeout=30)
    first._proc = None

    second = LiveServer(tmp_path / "data", env, log_path=tmp_path / "second.log")
    with second, httpx.Client(base_url=second.base_url, timeout=30) as http:
        assert http.post("/api/auth/login", json={"email": body["email"], "password": PASSWORD}).status_code == 200
        # The dead process's heartbeat turns stale 1.5 s after its last beat; the new one sweeps every 0.5 s.
        deadline = time.monotonic() + 60
        while (ended := http.get(f"/api/lessons/{lesson_id}").json())["ended_at"] is None:
            assert time.monotonic() < deadline, "the killed server's lesson was never ended"
            time.sleep(0.2)
        assert ended["end_reason"] == "server-restart"
        refused = http.get(f"/api/lessons/{lesson_id}/call")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "lesson_ended"
        still_open = http.post(f"/api/companions/{companion['id']}/lessons").json()["id"]
        assert second.terminate() == 0, second.tail()
    # Stopped as a service manager stops it (SIGTERM): its own lesson ended as a shutdown.
    with sqlite3.connect(tmp_path / "data" / "tutor.db") as db:
        (reason,) = db.execute("SELECT end_reason FROM lessons WHERE id = ?", (still_open,)).fetchone()
    assert reason == "server-shutdown"
