"""Building, browsing, searching, editing and deleting companions."""

from __future__ import annotations

import pytest

from tests.conftest import companion_body, create_companion, register, set_plan


async def test_create_and_fetch(client):
    await register(client)
    created = await create_companion(client, name="Countsy", subject="maths", topic="Fractions", duration=30)
    assert created["subject"] == "maths"
    assert created["duration"] == 30
    assert created["is_mine"] is True
    assert created["bookmarked"] is False
    fetched = await (await client.get(f"/api/companions/{created['id']}")).get_json()
    assert fetched == created


async def test_missing_companion_is_404(client):
    await register(client)
    response = await client.get("/api/companions/424242")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "companion_not_found"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"subject": "astrology"}, "subject"),
        ({"duration": 0}, "duration"),
        ({"duration": 500}, "duration"),
        ({"duration": 12.5}, "duration"),
        ({"name": ""}, "name"),
        ({"name": "    "}, "name"),
        ({"topic": "x" * 201}, "topic"),
        ({"voice": "x" * 65}, "voice"),
        ({"style": "shouty"}, "style"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_invalid_companion_is_400_and_stores_nothing(client, override, field):
    await register(client)
    response = await client.post("/api/companions", json=companion_body(**override))
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert (await (await client.get("/api/me/companions")).get_json())["total"] == 0


async def test_missing_fields_are_named(client):
    await register(client)
    response = await client.post("/api/companions", json={"name": "Only a name"})
    fields = (await response.get_json())["error"]["fields"]
    assert {"subject", "topic", "voice", "style", "duration"} <= set(fields)


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        ("{not json", "application/json", "invalid_json"),
        ("name=x", "application/x-www-form-urlencoded", "validation_error"),
        ("[1, 2]", "application/json", "validation_error"),
    ],
)
async def test_non_json_body_is_a_clear_400(client, data, content_type, code):
    await register(client)
    response = await client.post("/api/companions", data=data, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == code


async def test_subject_filter_and_topic_search(client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    await create_companion(client, name="Algebrina", subject="maths", topic="Linear equations")
    await create_companion(client, name="Verba", subject="language", topic="French verbs")
    await create_companion(client, name="Geo", subject="geography", topic="Rivers of Europe")

    maths = await (await client.get("/api/companions?subject=maths")).get_json()
    assert [c["name"] for c in maths["items"]] == ["Algebrina"]
    by_topic = await (await client.get("/api/companions?topic=VERBS")).get_json()
    assert [c["name"] for c in by_topic["items"]] == ["Verba"]
    by_name = await (await client.get("/api/companions?topic=algeb")).get_json()
    assert [c["name"] for c in by_name["items"]] == ["Algebrina"]
    both = await (await client.get("/api/companions?subject=maths&topic=verbs")).get_json()
    assert both["items"] == [] and both["total"] == 0
    bad = await client.get("/api/companions?subject=astrology")
    assert bad.status_code == 400


@pytest.mark.parametrize(("term", "expected"), [("%", ["100% sure"]), ("_", ["snake_case"]), (",", ["a, b"])])
async def test_search_wildcards_are_literal(client, term, expected):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    for topic in ("100% sure", "snake_case", "a, b", "plain words"):
        await create_companion(client, topic=topic, name="Tutor")
    from urllib.parse import quote

    found = await (await client.get(f"/api/companions?topic={quote(term)}")).get_json()
    assert [c["topic"] for c in found["items"]] == expected


async def test_pagination_edges(client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    for i in range(5):
        await create_companion(client, name=f"Tutor {i}")
    first = await (await client.get("/api/companions?limit=2&page=1")).get_json()
    assert first["total"] == 5 and first["page"] == 1 and first["limit"] == 2
    assert [c["name"] for c in first["items"]] == ["Tutor 4", "Tutor 3"]
    last = await (await client.get("/api/companions?limit=2&page=3")).get_json()
    assert [c["name"] for c in last["items"]] == ["Tutor 0"]
    beyond = await (await client.get("/api/companions?limit=2&page=4")).get_json()
    assert beyond["items"] == [] and beyond["total"] == 5
    for bad in ("page=0", "limit=0", "limit=101", "page=abc", "page=-1"):
        response = await client.get(f"/api/companions?{bad}")
        assert response.status_code == 400, bad
        assert (await response.get_json())["error"]["code"] == "validation_error"


async def test_author_edits_and_deletes(client):
    await register(client)
    companion = await create_companion(client)
    patched = await client.patch(f"/api/companions/{companion['id']}", json={"topic": "Backpropagation"})
    assert patched.status_code == 200
    body = await patched.get_json()
    assert body["topic"] == "Backpropagation" and body["name"] == companion["name"]
    bad = await client.patch(f"/api/companions/{companion['id']}", json={"duration": 0})
    assert bad.status_code == 400
    assert (await (await client.get(f"/api/companions/{companion['id']}")).get_json())["duration"] == 15
    assert (await client.delete(f"/api/companions/{companion['id']}")).status_code == 204
    assert (await client.get(f"/api/companions/{companion['id']}")).status_code == 404


async def test_my_companions_lists_only_mine(client, new_client):
    await register(client)
    await create_companion(client, name="Mine")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    await create_companion(bob, name="Bob's")
    mine = await (await client.get("/api/me/companions")).get_json()
    assert [c["name"] for c in mine["items"]] == ["Mine"]
    everyone = await (await client.get("/api/companions")).get_json()
    assert {c["name"] for c in everyone["items"]} == {"Mine", "Bob's"}


async def test_popular_sort_orders_by_lessons(client):
    await register(client)
    await set_plan(client.app, "ann@school.test", "pro")
    quiet = await create_companion(client, name="Quiet")
    busy = await create_companion(client, name="Busy")
    await create_companion(client, name="Newest")
    for _ in range(2):
        await client.post(f"/api/companions/{busy['id']}/lessons")
    await client.post(f"/api/companions/{quiet['id']}/lessons")
    popular = await (await client.get("/api/companions?sort=popular")).get_json()
    assert [c["name"] for c in popular["items"]] == ["Busy", "Quiet", "Newest"]
    assert popular["items"][0]["lessons_count"] == 2
