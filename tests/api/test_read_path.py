"""Read routes share what every viewer sees for a moment; each learner still sees their own flags and every edit."""

from __future__ import annotations

from typing import Any

from server.state import get_state
from tests.conftest import create_companion, register, set_plan

LIBRARY = "/api/companions?subject=science&topic=neural"


async def names_and_flags(client: Any, path: str = LIBRARY) -> list[tuple[str, bool]]:
    body = await (await client.get(path)).get_json()
    return [(c["name"], c["bookmarked"]) for c in body["items"]]


async def test_each_learner_sees_only_their_own_bookmarks_on_a_shared_page(client, new_client):
    await register(client)
    first = await create_companion(client, name="First")
    await create_companion(client, name="Second")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    assert await names_and_flags(bob) == [("Second", False), ("First", False)]

    assert (await client.put(f"/api/companions/{first['id']}/bookmark")).status_code == 204
    assert await names_and_flags(client) == [("Second", False), ("First", True)]
    assert await names_and_flags(bob) == [("Second", False), ("First", False)]
    assert (await client.delete(f"/api/companions/{first['id']}/bookmark")).status_code == 204
    assert await names_and_flags(client) == [("Second", False), ("First", False)]


async def test_a_page_another_learner_just_read_shows_every_change_at_once(client, new_client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    first = await create_companion(client, name="First")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    assert await names_and_flags(bob) == [("First", False)]

    second = await create_companion(client, name="Second")
    assert await names_and_flags(bob) == [("Second", False), ("First", False)]

    assert (await client.patch(f"/api/companions/{first['id']}", json={"name": "Renamed"})).status_code == 200
    assert await names_and_flags(bob) == [("Second", False), ("Renamed", False)]
    assert (await bob.get(f"/api/companions/{first['id']}")).status_code == 200

    assert (await client.post(f"/api/companions/{first['id']}/lessons")).status_code == 201
    library = await (await bob.get(LIBRARY)).get_json()
    assert [(c["name"], c["lessons_count"]) for c in library["items"]] == [("Second", 0), ("Renamed", 1)]
    recent = await (await bob.get("/api/lessons/recent")).get_json()
    assert [(c["name"], c["lessons_count"], c["is_mine"]) for c in recent["items"]] == [("Renamed", 1, False)]

    # Deleted with a lesson held: archived, so it leaves the library and the recent list at once.
    assert (await client.delete(f"/api/companions/{first['id']}")).status_code == 204
    assert await names_and_flags(bob) == [("Second", False)]
    assert (await (await bob.get("/api/lessons/recent")).get_json())["items"] == []
    assert (await bob.get(f"/api/companions/{first['id']}")).status_code == 404
    # Never used: erased.
    assert (await client.delete(f"/api/companions/{second['id']}")).status_code == 204
    assert await names_and_flags(bob) == []


async def test_recent_lessons_carry_the_viewers_own_bookmark_and_authorship(client, new_client):
    await register(client)
    companion = await create_companion(client, name="Taught")
    assert (await client.post(f"/api/companions/{companion['id']}/lessons")).status_code == 201
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    assert (await bob.put(f"/api/companions/{companion['id']}/bookmark")).status_code == 204

    ann_view = (await (await client.get("/api/lessons/recent")).get_json())["items"]
    bob_view = (await (await bob.get("/api/lessons/recent")).get_json())["items"]
    assert [(c["name"], c["bookmarked"], c["is_mine"]) for c in ann_view] == [("Taught", False, True)]
    assert [(c["name"], c["bookmarked"], c["is_mine"]) for c in bob_view] == [("Taught", True, False)]

    history = (await (await client.get("/api/me/lessons")).get_json())["items"]
    assert [(x["companion"]["name"], x["companion"]["bookmarked"]) for x in history] == [("Taught", False)]
    assert history[0]["started_at"].endswith(("Z", "+00:00"))


async def test_the_shared_copy_of_a_page_lasts_only_until_the_next_write(client):
    """What another process changed shows within the cache's two seconds; what this one wrote, at once."""
    await register(client)
    db = get_state(client.app).db
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    assert await db.shared_cache.get("k", 60, read) == 1
    assert await db.shared_cache.get("k", 60, read) == 1
    await create_companion(client)
    assert await db.shared_cache.get("k", 60, read) == 2
    assert await db.shared_cache.get("brief", 0, read) == 3
    assert await db.shared_cache.get("brief", 0, read) == 4  # kept no time at all
