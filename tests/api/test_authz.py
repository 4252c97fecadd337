"""Who may do what: anonymous visitors, other learners, authors."""

from __future__ import annotations

import pytest

from tests.conftest import companion_body, create_companion, register

PRIVATE_ROUTES = [
    ("GET", "/api/me"),
    ("GET", "/api/me/companions"),
    ("GET", "/api/me/lessons"),
    ("GET", "/api/me/bookmarks"),
    ("GET", "/api/companions"),
    ("POST", "/api/companions"),
    ("GET", "/api/companions/1"),
    ("PATCH", "/api/companions/1"),
    ("DELETE", "/api/companions/1"),
    ("PUT", "/api/companions/1/bookmark"),
    ("DELETE", "/api/companions/1/bookmark"),
    ("POST", "/api/companions/1/lessons"),
    ("GET", "/api/lessons/recent"),
    ("GET", "/api/lessons/1"),
    ("GET", "/api/lessons/1/call"),
]


@pytest.mark.parametrize(("method", "path"), PRIVATE_ROUTES)
async def test_anonymous_gets_401_json(client, method, path):
    response = await client.open(path, method=method, json=companion_body() if method in ("POST", "PATCH") else None)
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/api/config", "/api/plans"])
async def test_public_routes_answer_anonymous(client, path):
    assert (await client.get(path)).status_code == 200


async def test_another_learners_lesson_is_404(client, new_client):
    await register(client, email="ann@school.test")
    companion = await create_companion(client)
    lesson = await (await client.post(f"/api/companions/{companion['id']}/lessons")).get_json()

    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")
    response = await bob.get(f"/api/lessons/{lesson['id']}")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "lesson_not_found"
    assert (await bob.get(f"/api/lessons/{lesson['id']}/call")).status_code == 404
    assert (await (await bob.get("/api/me/lessons")).get_json())["items"] == []
    # Ann still sees hers.
    assert (await client.get(f"/api/lessons/{lesson['id']}")).status_code == 200


async def test_only_the_author_edits_or_deletes(client, new_client):
    await register(client, email="ann@school.test")
    companion = await create_companion(client, name="Ann's tutor")
    bob = new_client()
    await register(bob, email="bob@school.test", name="Bob")

    patch = await bob.patch(f"/api/companions/{companion['id']}", json={"name": "Hijacked"})
    assert patch.status_code == 403
    assert (await patch.get_json())["error"]["code"] == "not_author"
    delete = await bob.delete(f"/api/companions/{companion['id']}")
    assert delete.status_code == 403

    seen = await (await bob.get(f"/api/companions/{companion['id']}")).get_json()
    assert seen["name"] == "Ann's tutor"
    assert seen["is_mine"] is False


async def test_author_is_taken_from_the_session_not_the_body(client):
    user = await register(client)
    response = await client.post("/api/companions", json=companion_body(author_id=999))
    assert response.status_code == 400
    assert "author_id" in (await response.get_json())["error"]["fields"]
    companion = await create_companion(client)
    assert companion["author"] == {"id": user["id"], "name": "Ann"}
