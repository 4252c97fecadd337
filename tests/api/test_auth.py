"""Sign-up, sign-in, sign-out and the session: what a learner sees at the door."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, register


async def test_register_signs_in_and_me_shows_plan_and_usage(client):
    user = await register(client, email="Ann@School.test ", name="Ann")
    assert user["email"] == "ann@school.test"
    assert user["plan"] == "free"
    me = await (await client.get("/api/me")).get_json()
    assert me["name"] == "Ann"
    assert me["usage"] == {"companions": {"used": 0, "limit": 3}, "lessons": {"used": 0, "limit": 10}}


async def test_login_logout_roundtrip(client):
    await register(client)
    assert (await client.post("/api/auth/logout")).status_code == 204
    assert (await client.get("/api/me")).status_code == 401
    response = await client.post("/api/auth/login", json={"email": "ann@school.test", "password": PASSWORD})
    assert response.status_code == 200
    assert (await response.get_json())["name"] == "Ann"
    assert (await client.get("/api/me")).status_code == 200


async def test_wrong_password_and_unknown_email_look_the_same(client):
    await register(client)
    await client.post("/api/auth/logout")
    wrong = await client.post("/api/auth/login", json={"email": "ann@school.test", "password": "nope-nope"})
    unknown = await client.post("/api/auth/login", json={"email": "zed@school.test", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (await wrong.get_json()) == (await unknown.get_json())
    assert (await wrong.get_json())["error"]["code"] == "invalid_credentials"


async def test_duplicate_email_is_a_conflict_and_keeps_the_first_account(client, new_client):
    await register(client, name="Ann")
    other = new_client()
    response = await other.post(
        "/api/auth/register", json={"email": "ann@school.test", "password": PASSWORD, "name": "Impostor"}
    )
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "email_taken"
    assert (await (await client.get("/api/me")).get_json())["name"] == "Ann"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@b.test", "password": "short", "name": "A"}, "password"),
        ({"email": "a@b.test", "password": PASSWORD, "name": "   "}, "name"),
        ({"email": "a@b.test", "password": PASSWORD, "name": "A", "plan": "pro"}, "plan"),
    ],
)
async def test_register_validation_names_the_field(client, body, field):
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]


async def test_plan_cannot_be_chosen_at_sign_up(client):
    response = await client.post(
        "/api/auth/register", json={"email": "a@b.test", "password": PASSWORD, "name": "A", "plan": "pro"}
    )
    assert response.status_code == 400
    assert (await client.get("/api/me")).status_code == 401


async def test_forged_session_cookie_is_refused(client):
    client.set_cookie("localhost", "tutor_session", "eyJ1aWQiOjF9.forged.signature")
    assert (await client.get("/api/me")).status_code == 401


async def test_registration_can_be_closed(tmp_path):
    from server.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, AUTH__ALLOW_REGISTRATION="false"))
    async with app.test_app():
        response = await app.test_client().post(
            "/api/auth/register", json={"email": "a@b.test", "password": PASSWORD, "name": "A"}
        )
    assert response.status_code == 403
    assert (await response.get_json())["error"]["code"] == "registration_closed"


async def test_a_password_is_taken_exactly_as_typed(client, new_client):
    spaced = "  abcdefgh12  "
    await register(client, password=spaced)
    await client.post("/api/auth/logout")
    stripped = await client.post("/api/auth/login", json={"email": "ann@school.test", "password": spaced.strip()})
    assert stripped.status_code == 401
    exact = await new_client().post("/api/auth/login", json={"email": "ann@school.test", "password": spaced})
    assert exact.status_code == 200


@pytest.mark.parametrize(
    ("password", "words"),
    [("Password123", "common"), ("iloveyou", "common"), ("short", "at least 8"), ("x" * 257, "at most 256")],
)
async def test_a_weak_password_is_refused_in_words(client, password, words):
    response = await client.post("/api/auth/register", json={"email": "a@b.test", "password": password, "name": "A"})
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "validation_error"
    assert words in error["fields"]["password"]
    assert (await client.get("/api/me")).status_code == 401
