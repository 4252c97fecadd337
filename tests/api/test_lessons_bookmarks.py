"""Lesson history, transcripts, recent lessons across the school, and bookmarks."""

from __future__ import annotations

from server import lessons
from server.state import get_state
from tests.conftest import create_companion, register


async def test_start_lesson_and_see_it_in_history_with_transcript(client):
    await register(client)
    companion = await create_companion(client, topic="Photosynthesis")
    response = await client.post(f"/api/companions/{companion['id']}/lessons")
    assert response.status_code == 201
    lesson = await response.get_json()
    assert lesson["companion"]["id"] == companion["id"]
    assert lesson["ended_at"] is None

    db = get_state(client.app).db
    await lessons.append_transcript(db, lesson["id"], "assistant", "Today we'll be talking about Photosynthesis.")
    await lessons.append_transcript(db, lesson["id"], "user", "What do plants eat?")
    await lessons.end_lesson(db, lesson["id"], "customer-ended-call")
    await lessons.end_lesson(db, lesson["id"], "silence-timed-out")  # a second end changes nothing

    detail = await (await client.get(f"/api/lessons/{lesson['id']}")).get_json()
    assert [(t["order"], t["role"], t["text"]) for t in detail["transcript"]] == [
        (1, "assistant", "Today we'll be talking about Photosynthesis."),
        (2, "user", "What do plants eat?"),
    ]
    assert detail["end_reason"] == "customer-ended-call"
    assert detail["length_seconds"] is not None and detail["length_seconds"] >= 0

    history = await (await client.get("/api/me/lessons")).get_json()
    assert [x["id"] for x in history["items"]] == [lesson["id"]]
    assert "transcript" not in history["items"][0] or history["items"][0]["transcript"] is None
    me = await (await client.get("/api/me")).get_json()
    assert me["usage"]["lessons"]["used"] == 1 and me["stats"]["lessons_done"] == 1


async def test_lesson_for_missing_companion_is_404(client):
    await register(client)
    response = await client.post("/api/companions/999/lessons")
    assert response.status_code == 404
    assert (await (await client.get("/api/me")).get_json())["usage"]["lessons"]["used"] == 0


async def test_ended_lesson_has_no_call(client):
    await register(client)
    companion = await create_companion(client)
    lesson = await (await client.post(f"/api/companions/{companion['id']}/lessons")).get_json()
    call = await (await client.get(f"/api/lessons/{lesson['id']}/call")).get_json()
    assert call["assistant"]["metadata"]["lessonId"] == lesson["id"]
    assert call["assistant"]["maxDurationSeconds"] == companion["duration"] * 60
    assert companion["topic"] in call["assistant"]["firstMessage"]
    await lessons.end_lesson(get_state(client.app).db, lesson["id"], "customer-ended-call")
    response = await client.get(f"/api/lessons/{lesson['id']}/call")
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "lesson_ended"


async def test_recent_lessons_show_companions_without_learners(client, new_client):
    await register(client)
    first = await create_companion(client, name="First")
    second = await create_companion(client, name="Second")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    await bob.post(f"/api/companions/{first['id']}/lessons")
    await client.post(f"/api/companions/{second['id']}/lessons")
    await bob.post(f"/api/companions/{first['id']}/lessons")

    recent = await (await bob.get("/api/lessons/recent?limit=5")).get_json()
    assert [c["name"] for c in recent["items"]] == ["First", "Second"]
    text = str(recent)
    assert "bob@school.test" not in text and "ann@school.test" not in text
    assert (await bob.get("/api/lessons/recent?limit=0")).status_code == 400


async def test_bookmarks_are_idempotent_and_private(client, new_client):
    await register(client)
    companion = await create_companion(client)
    url = f"/api/companions/{companion['id']}/bookmark"
    assert (await client.put(url)).status_code == 204
    assert (await client.put(url)).status_code == 204
    marks = await (await client.get("/api/me/bookmarks")).get_json()
    assert [c["id"] for c in marks["items"]] == [companion["id"]]
    assert marks["items"][0]["bookmarked"] is True
    listed = await (await client.get("/api/companions")).get_json()
    assert listed["items"][0]["bookmarked"] is True

    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    assert (await (await bob.get("/api/me/bookmarks")).get_json())["items"] == []
    assert (await (await bob.get("/api/companions")).get_json())["items"][0]["bookmarked"] is False

    assert (await client.delete(url)).status_code == 204
    assert (await client.delete(url)).status_code == 204
    assert (await (await client.get("/api/me/bookmarks")).get_json())["items"] == []
    missing = await client.put("/api/companions/999/bookmark")
    assert missing.status_code == 404
