"""Read routes share what every viewer sees for a moment; each learner still sees their own flags and every edit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.engine import Engine

from server.companions import CompanionList, CompanionOut, CompanionPage
from server.lessons import LessonList, LessonOut
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


class _Selects:
    """Counts the SELECT statements every engine runs while it is open."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> _Selects:
        event.listen(Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.count += 1


async def test_a_learners_history_is_one_query_with_each_companion_as_it_is_now(client, new_client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    names = ("First", "Second", "Third")
    made = [await create_companion(client, name=name) for name in names]
    assert (await client.post(f"/api/companions/{made[0]['id']}/lessons")).status_code == 201
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    for companion in made:
        assert (await bob.post(f"/api/companions/{companion['id']}/lessons")).status_code == 201
    assert (await bob.put(f"/api/companions/{made[1]['id']}/bookmark")).status_code == 204
    # Ann deletes the third after Bob's lesson with it: archived, and still in Bob's history as it is.
    assert (await client.delete(f"/api/companions/{made[2]['id']}")).status_code == 204

    with _Selects() as selects:
        history = (await (await bob.get("/api/me/lessons")).get_json())["items"]
    # The session's lookup and the history itself, however many companions the history shows.
    assert selects.count == 2
    shown = [(x["companion"]["name"], x["companion"]["lessons_count"], x["companion"]["bookmarked"]) for x in history]
    # Newest first; lessons_count counts every learner's lessons with the companion (Ann's too), not Bob's row.
    assert shown == [("Third", 1, False), ("Second", 1, True), ("First", 2, False)]
    assert [(x["companion"]["archived"], x["companion"]["is_mine"]) for x in history] == [(True, False)] + [
        (False, False)
    ] * 2
    assert [x["companion"]["author"]["name"] for x in history] == ["Ann"] * 3


READ_ROUTES = {
    "/api/companions?subject=science": CompanionPage,
    "/api/me/companions": CompanionPage,
    "/api/me/bookmarks": CompanionList,
    "/api/lessons/recent": CompanionList,
    "/api/me/lessons": LessonList,
}


async def test_the_read_routes_answer_exactly_what_the_api_documents(client):
    """Their answers are encoded from the domain's own dicts, unvalidated: each must still be its model, to the key."""
    await register(client)
    companion = await create_companion(client, name="Ünïcode Neura")
    lesson = await (await client.post(f"/api/companions/{companion['id']}/lessons")).get_json()
    assert (await client.put(f"/api/companions/{companion['id']}/bookmark")).status_code == 204
    routes: dict[str, type[BaseModel]] = {
        **READ_ROUTES,
        f"/api/companions/{companion['id']}": CompanionOut,
        f"/api/lessons/{lesson['id']}": LessonOut,
    }
    spec = await (await client.get("/openapi.json")).get_json()
    for path, model in routes.items():
        response = await client.get(path)
        assert response.status_code == 200 and response.mimetype == "application/json", path
        body = await response.get_json()
        assert body == model.model_validate(body).model_dump(mode="json"), path
        assert "Ünïcode Neura" in json.dumps(body, ensure_ascii=False), path
        documented = spec["paths"][_template(path)]["get"]["responses"]["200"]
        assert model.__name__ in json.dumps(documented), path
    # Their query strings are validated as before: a 400 naming the field.
    bad = await client.get("/api/me/lessons?limit=0")
    assert bad.status_code == 400
    assert list((await bad.get_json())["error"]["fields"]) == ["limit"]
    unknown = await (await client.get("/api/companions?colour=red")).get_json()
    assert unknown["error"]["fields"] == {"colour": "is not a known field"}


def _template(path: str) -> str:
    route = path.split("?", 1)[0]
    if route.startswith("/api/companions/"):
        return "/api/companions/{companion_id}"
    if route.startswith("/api/lessons/") and route != "/api/lessons/recent":
        return "/api/lessons/{lesson_id}"
    return route


async def _until(condition: Any) -> None:
    for _ in range(1000):  # a few turns of the event loop, never a clock
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_requests_that_miss_a_page_together_share_one_read_of_it(client):
    """Else, when a busy page's copy runs out, every request in flight runs its query at once and all wait."""
    await register(client)
    db = get_state(client.app).db
    reads = 0
    release = asyncio.Event()

    async def read() -> int:
        nonlocal reads
        reads += 1
        mine = reads
        await release.wait()
        return mine

    together = [asyncio.create_task(db.shared_cache.get("page", 60, read)) for _ in range(5)]
    await _until(lambda: reads == 1)
    release.set()
    assert await asyncio.gather(*together) == [1] * 5
    assert reads == 1

    # A request after this process's write never takes a read that began before it.
    release.clear()
    before = asyncio.create_task(db.shared_cache.get("next", 60, read))
    await _until(lambda: reads == 2)
    await create_companion(client)
    after = asyncio.create_task(db.shared_cache.get("next", 60, read))
    await _until(lambda: reads == 3)
    release.set()
    assert (await before, await after) == (2, 3)
