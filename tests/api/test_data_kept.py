"""Data that is never lost: a deleted companion's lessons, plan usage, other learners' lessons after an account goes."""

from __future__ import annotations

from sqlalchemy import func, select

from server import lessons, retention
from server.state import get_state
from server.store.models import Bookmark, Companion, Lesson, TranscriptEntry
from tests.conftest import companion_body, create_companion, register, set_plan


async def _lesson(client, companion_id: int) -> dict:
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def _json(client, path: str) -> dict:
    response = await client.get(path)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def _ann_deletes_a_companion_bob_learned_with(client, new_client) -> tuple[dict, dict, object]:
    """Ann builds Neura, Bob bookmarks it and has a lesson with a transcript, then Ann deletes Neura."""
    await register(client)
    neura = await create_companion(client, name="Neura", subject="science", topic="Neural networks")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    assert (await bob.put(f"/api/companions/{neura['id']}/bookmark")).status_code == 204
    lesson = await _lesson(bob, neura["id"])
    db = get_state(client.app).db
    await lessons.append_transcript(db, lesson["id"], "assistant", "Today we'll be talking about Neural networks.")
    await lessons.append_transcript(db, lesson["id"], "user", "What is a neuron?")
    await lessons.end_lesson(db, lesson["id"], "customer-ended-call")
    assert (await client.delete(f"/api/companions/{neura['id']}")).status_code == 204
    return neura, lesson, bob


async def test_deleting_a_used_companion_keeps_other_learners_lessons_and_transcripts(client, new_client):
    _, lesson, bob = await _ann_deletes_a_companion_bob_learned_with(client, new_client)

    history = await _json(bob, "/api/me/lessons")
    assert [x["id"] for x in history["items"]] == [lesson["id"]]
    kept = history["items"][0]["companion"]
    assert (kept["name"], kept["subject"], kept["topic"], kept["archived"]) == (
        "Neura",
        "science",
        "Neural networks",
        True,
    )
    detail = await _json(bob, f"/api/lessons/{lesson['id']}")
    assert detail["companion"]["name"] == "Neura" and detail["end_reason"] == "customer-ended-call"
    assert [t["text"] for t in detail["transcript"]] == [
        "Today we'll be talking about Neural networks.",
        "What is a neuron?",
    ]
    me = await _json(bob, "/api/me")
    assert me["usage"]["lessons"]["used"] == 1 and me["stats"]["lessons_done"] == 1


async def test_an_archived_companion_leaves_the_library_and_takes_no_lessons(client, new_client):
    neura, _, bob = await _ann_deletes_a_companion_bob_learned_with(client, new_client)
    await create_companion(client, name="Other", subject="maths", topic="Fractions")

    for path in ("/api/companions", "/api/companions?sort=popular", "/api/companions?sort=name"):
        listed = await _json(bob, path)
        assert [c["name"] for c in listed["items"]] == ["Other"] and listed["total"] == 1, path
    assert (await _json(bob, "/api/companions?subject=science&topic=neural"))["total"] == 0
    assert (await _json(bob, "/api/lessons/recent"))["items"] == []
    assert (await _json(bob, "/api/me/bookmarks"))["items"] == []
    assert [c["name"] for c in (await _json(client, "/api/me/companions"))["items"]] == ["Other"]

    assert (await bob.get(f"/api/companions/{neura['id']}")).status_code == 404
    started = await bob.post(f"/api/companions/{neura['id']}/lessons")
    assert started.status_code == 409
    assert (await started.get_json())["error"]["code"] == "companion_archived"
    assert (await _json(bob, "/api/me"))["usage"]["lessons"]["used"] == 1
    # The author can no longer edit or delete it either: it is gone from their library.
    edited = await client.patch(f"/api/companions/{neura['id']}", json={"name": "Renamed"})
    assert edited.status_code == 404
    assert (await client.delete(f"/api/companions/{neura['id']}")).status_code == 404
    assert (await _json(bob, "/api/me/lessons"))["items"][0]["companion"]["name"] == "Neura"


async def test_a_free_learner_who_deletes_their_companion_does_not_get_their_lessons_back(client):
    await register(client)
    companion = await create_companion(client)
    for _ in range(10):
        await _lesson(client, companion["id"])
    assert (await client.delete(f"/api/companions/{companion['id']}")).status_code == 204

    me = await _json(client, "/api/me")
    assert me["usage"]["lessons"]["used"] == 10
    assert len((await _json(client, "/api/me/lessons"))["items"]) == 10
    again = await create_companion(client, name="Again")
    refused = await client.post(f"/api/companions/{again['id']}/lessons")
    assert refused.status_code == 403
    assert (await refused.get_json())["error"]["code"] == "lesson_limit_reached"


async def test_archived_companions_do_not_count_against_the_companion_limit(client):
    await register(client)
    used = await create_companion(client, name="Used")
    await create_companion(client, name="Two")
    await create_companion(client, name="Three")
    await _lesson(client, used["id"])
    full = await client.post("/api/companions", json=companion_body(name="Four"))
    assert (await full.get_json())["error"]["code"] == "companion_limit_reached"
    assert (await client.delete(f"/api/companions/{used['id']}")).status_code == 204
    assert (await _json(client, "/api/me"))["usage"]["companions"]["used"] == 2
    await create_companion(client, name="Four")


async def test_an_unused_companion_is_erased(client, new_client):
    await register(client)
    unused = await create_companion(client, name="Unused")
    assert (await client.put(f"/api/companions/{unused['id']}/bookmark")).status_code == 204
    assert (await client.delete(f"/api/companions/{unused['id']}")).status_code == 204
    assert (await client.get(f"/api/companions/{unused['id']}")).status_code == 404
    assert (await _json(client, "/api/me/bookmarks"))["items"] == []
    async with get_state(client.app).db.read() as session:
        assert await session.get(Companion, unused["id"]) is None
        assert await session.scalar(select(func.count()).select_from(Bookmark)) == 0


async def test_deleting_an_account_keeps_other_learners_lessons_with_its_companions(client, new_client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    neura = await create_companion(client, name="Neura", subject="science", topic="Neural networks")
    ann_lesson = await _lesson(client, neura["id"])
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    finished = await _lesson(bob, neura["id"])
    still_open = await _lesson(bob, neura["id"])
    db = get_state(client.app).db
    await lessons.append_transcript(db, ann_lesson["id"], "user", "Ann's words")
    await lessons.append_transcript(db, finished["id"], "user", "Bob's words")
    await lessons.end_lesson(db, finished["id"], "customer-ended-call")

    await retention.delete_learner(db, "ann@school.test")

    history = await _json(bob, "/api/me/lessons")
    assert sorted(x["id"] for x in history["items"]) == sorted([finished["id"], still_open["id"]])
    for item in history["items"]:
        assert item["companion"]["id"] is None
        assert (item["companion"]["name"], item["companion"]["topic"]) == ("Neura", "Neural networks")
    detail = await _json(bob, f"/api/lessons/{finished['id']}")
    assert [t["text"] for t in detail["transcript"]] == ["Bob's words"]
    assert detail["companion"]["subject"] == "science"
    assert (await _json(bob, "/api/me"))["usage"]["lessons"]["used"] == 2
    # A lesson whose companion is gone cannot go on, and says why instead of failing.
    call = await bob.get(f"/api/lessons/{still_open['id']}/call")
    assert call.status_code == 409
    assert (await call.get_json())["error"]["code"] == "companion_deleted"

    async with db.read() as session:
        assert await session.get(Lesson, ann_lesson["id"]) is None
        left = select(func.count()).select_from(TranscriptEntry).where(TranscriptEntry.lesson_id == ann_lesson["id"])
        assert await session.scalar(left) == 0
        assert await session.get(Companion, neura["id"]) is None
