"""Plan limits: free, core and pro, all-time or monthly lesson counts, and limits under concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from server.state import get_state
from server.store.models import Lesson
from tests.conftest import companion_body, create_companion, make_settings, register, set_plan


async def test_free_plan_stops_at_three_companions(client):
    await register(client)
    for i in range(3):
        await create_companion(client, name=f"Tutor {i}")
    response = await client.post("/api/companions", json=companion_body(name="One too many"))
    assert response.status_code == 403
    error = (await response.get_json())["error"]
    assert error["code"] == "companion_limit_reached"
    assert "3" in error["message"]
    mine = await (await client.get("/api/me/companions")).get_json()
    assert mine["total"] == 3


async def test_upgrading_raises_the_limit(client):
    await register(client)
    for i in range(3):
        await create_companion(client, name=f"Tutor {i}")
    await set_plan(client.app, "ann@school.test", "core")
    await create_companion(client, name="Fourth")
    me = await (await client.get("/api/me")).get_json()
    assert me["plan"] == "core"
    assert me["usage"]["companions"] == {"used": 4, "limit": 10}
    assert me["usage"]["lessons"] == {"used": 0, "limit": None}


async def test_free_plan_stops_at_ten_lessons(client):
    await register(client)
    companion = await create_companion(client)
    for _ in range(10):
        assert (await client.post(f"/api/companions/{companion['id']}/lessons")).status_code == 201
    response = await client.post(f"/api/companions/{companion['id']}/lessons")
    assert response.status_code == 403
    assert (await response.get_json())["error"]["code"] == "lesson_limit_reached"
    assert len((await (await client.get("/api/me/lessons")).get_json())["items"]) == 10


async def test_twenty_simultaneous_creates_make_exactly_three(client):
    await register(client)
    responses = await asyncio.gather(
        *(client.post("/api/companions", json=companion_body(name=f"Racer {i}")) for i in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 3
    assert statuses.count(403) == 17
    assert (await (await client.get("/api/me/companions")).get_json())["total"] == 3


async def test_simultaneous_lessons_never_pass_the_last_free_slot(client):
    await register(client)
    companion = await create_companion(client)
    for _ in range(8):
        await client.post(f"/api/companions/{companion['id']}/lessons")
    responses = await asyncio.gather(*(client.post(f"/api/companions/{companion['id']}/lessons") for _ in range(10)))
    assert sorted(r.status_code for r in responses).count(201) == 2
    assert (await (await client.get("/api/me")).get_json())["usage"]["lessons"]["used"] == 10


async def test_monthly_lesson_period_counts_this_month_only(tmp_path):
    from server.app import create_app

    app = create_app(make_settings(tmp_path, PLANS__LESSON_PERIOD="month", PLANS__FREE__LESSONS="1"))
    async with app.test_app():
        client = app.test_client()
        user = await register(client)
        companion = await create_companion(client)
        async with get_state(app).db.write() as session:
            last_month = datetime.now(UTC).replace(day=1) - timedelta(days=3)
            session.add(Lesson(companion_id=companion["id"], learner_id=user["id"], started_at=last_month))
        assert (await client.post(f"/api/companions/{companion['id']}/lessons")).status_code == 201
        blocked = await client.post(f"/api/companions/{companion['id']}/lessons")
        assert blocked.status_code == 403
        assert "this month" in (await blocked.get_json())["error"]["message"]
        me = await (await client.get("/api/me")).get_json()
        assert me["usage"]["lessons"] == {"used": 1, "limit": 1}
        assert me["stats"]["lessons_done"] == 2


async def test_plans_are_public_and_match_config(client):
    plans = await (await client.get("/api/plans")).get_json()
    assert plans["items"] == [
        {"id": "free", "companions": 3, "lessons": 10},
        {"id": "core", "companions": 10, "lessons": None},
        {"id": "pro", "companions": None, "lessons": None},
    ]
