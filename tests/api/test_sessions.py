"""Server-side sessions: logout, sign out everywhere, a password change and a disabled account end them at once."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

from sqlalchemy import select, update

from server import accounts
from server.state import get_state
from server.store.models import ServerSession, utcnow
from server.timeutil import as_utc
from tests.conftest import PASSWORD, register

EMAIL = "ann@school.test"
NEW_PASSWORD = "a brand new passphrase"


def cookies_set(response) -> dict[str, str]:
    """The cookies a response sets (name -> the whole Set-Cookie line)."""
    found = {}
    for line in response.headers.getlist("Set-Cookie"):
        found[next(iter(SimpleCookie(line)))] = line
    return found


def token_of(response) -> str:
    return next(iter(SimpleCookie(cookies_set(response)["tutor_session"]).values())).value


async def browser_with(new_client, token: str):
    other = new_client()
    other.set_cookie("localhost", "tutor_session", token)
    return other


async def sign_in(client, password: str = PASSWORD):
    response = await client.post("/api/auth/login", json={"email": EMAIL, "password": password})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return response


async def me_status(client) -> int:
    return (await client.get("/api/me")).status_code


async def test_a_cookie_copied_before_logout_is_refused_after_it(client, new_client):
    await register(client)
    token = token_of(await sign_in(client))
    copy = await browser_with(new_client, token)
    assert await me_status(copy) == 200

    logout = await client.post("/api/auth/logout")
    assert logout.status_code == 204
    assert "Max-Age=0" in cookies_set(logout)["tutor_session"]
    assert await me_status(copy) == 401
    assert await me_status(client) == 401


async def test_the_database_holds_only_a_hash_of_the_cookie(app, client):
    token = token_of(await client.post("/api/auth/register", json={"email": EMAIL, "password": PASSWORD, "name": "A"}))
    async with get_state(app).db.read() as session:
        ids = list((await session.execute(select(ServerSession.id))).scalars())
    assert len(ids) == 1 and token not in ids[0] and len(ids[0]) == 64


async def test_sign_out_everywhere_ends_the_other_browsers_session_too(client, new_client):
    await register(client)
    laptop = new_client()
    await sign_in(laptop)
    assert await me_status(laptop) == 200

    response = await client.post("/api/auth/logout-all")
    assert response.status_code == 204
    assert await me_status(laptop) == 401
    assert await me_status(client) == 401
    # Signing in again works as before.
    await sign_in(laptop)
    assert await me_status(laptop) == 200


async def test_a_password_change_ends_other_sessions_but_not_this_one(client, new_client):
    await register(client)
    phone = new_client()
    await sign_in(phone)

    response = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["other_sessions_ended"] == 1
    assert await me_status(client) == 200
    assert await me_status(phone) == 401

    old = await phone.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert old.status_code == 401
    await sign_in(phone, NEW_PASSWORD)
    assert await me_status(phone) == 200


async def test_a_password_change_needs_the_current_password_and_follows_the_rule(client):
    await register(client)
    wrong = await client.post(
        "/api/auth/password", json={"current_password": "not my password", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 400
    assert "current_password" in (await wrong.get_json())["error"]["fields"]
    common = await client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "iloveyou1"})
    assert common.status_code == 400
    assert "common" in (await common.get_json())["error"]["fields"]["new_password"]
    # Neither changed anything, and neither signed this browser out.
    assert await me_status(client) == 200
    assert (await client.post("/api/auth/logout")).status_code == 204
    await sign_in(client, PASSWORD)


async def test_disabling_an_account_ends_its_sessions_and_blocks_sign_in(app, client, new_client):
    await register(client)
    tablet = new_client()
    await sign_in(tablet)
    db = get_state(app).db

    _, ended = await accounts.set_disabled(db, EMAIL, True)
    assert ended == 2
    assert await me_status(client) == 401
    assert await me_status(tablet) == 401
    refused = await tablet.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert refused.status_code == 403
    assert (await refused.get_json())["error"]["code"] == "account_disabled"
    # A wrong password still reads as a wrong password: the answer says nothing about the account to a stranger.
    wrong = await tablet.post("/api/auth/login", json={"email": EMAIL, "password": "not the password"})
    assert wrong.status_code == 401

    await accounts.set_disabled(db, EMAIL, False)
    await sign_in(tablet)
    assert await me_status(tablet) == 200


async def test_an_expired_session_is_refused(app, client):
    await register(client)
    async with get_state(app).db.write() as session:
        await session.execute(update(ServerSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await me_status(client) == 401


async def test_use_slides_the_expiry_on(app, client):
    await register(client)
    db = get_state(app).db
    soon = utcnow() + timedelta(minutes=1)
    async with db.write() as session:
        await session.execute(
            update(ServerSession).values(last_seen_at=utcnow() - timedelta(minutes=10), expires_at=soon)
        )
    response = await client.get("/api/me")
    assert response.status_code == 200
    # The cookie is sent again so the browser keeps it as long as the server does.
    assert "tutor_session" in cookies_set(response)
    async with db.read() as session:
        expires_at = (await session.execute(select(ServerSession.expires_at))).scalar_one()
    assert as_utc(expires_at) > utcnow() + timedelta(days=13)
    # A request right after does not write or resend anything.
    assert "tutor_session" not in cookies_set(await client.get("/api/me"))


async def test_a_401_never_clears_the_session_cookie(client):
    await register(client)
    client.set_cookie("localhost", "tutor_session", "not-a-session")
    refused = await client.get("/api/me")
    assert refused.status_code == 401
    assert "tutor_session" not in cookies_set(refused)
    refused_post = await client.post("/api/companions", json={})
    assert refused_post.status_code == 401
    assert cookies_set(refused_post) == {}


async def test_a_logout_without_the_cookie_clears_nothing(client, new_client):
    # A cross-site form posting to /logout carries no SameSite=Lax cookie; it must not sign the learner out.
    await register(client)
    stranger = new_client()
    response = await stranger.post("/api/auth/logout")
    assert response.status_code == 204
    assert cookies_set(response) == {}
    assert await me_status(client) == 200


async def test_the_sessions_list_marks_this_browser(client, new_client):
    await register(client)
    other = new_client()
    await other.post(
        "/api/auth/login",
        json={"email": EMAIL, "password": PASSWORD},
        headers={"User-Agent": "Phone browser"},
    )
    body = await (await client.get("/api/auth/sessions")).get_json()
    assert len(body["items"]) == 2
    assert [item["current"] for item in body["items"]].count(True) == 1
    assert "Phone browser" in [item["user_agent"] for item in body["items"]]
    assert (await new_client().get("/api/auth/sessions")).status_code == 401
