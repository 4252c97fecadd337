"""Single sign-on maps a claim to roles as it maps plans, and still creates accounts while sign-up is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from quart import Quart

from harness.oidc_provider import OIDCProvider, ProviderUser
from server import accounts
from server.state import get_state
from tests.api.test_sso import CALLBACK, CLIENT_ID, CLIENT_SECRET, me, sign_in_with_school, sso_env, started_app
from tests.conftest import PASSWORD

ROLE_MAP = '{"teachers": "teacher", "it-staff": "admin", "students": "learner"}'


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    user = ProviderUser(sub="school-7", email="tess@school.test", name="Tess Teacher", groups=["teachers"])
    with OIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[CALLBACK], user=user) as running:
        yield running


@pytest.fixture
async def app(tmp_path: Path, provider: OIDCProvider) -> AsyncIterator[Quart]:
    env = sso_env(provider.issuer, AUTH__SSO__ROLE_CLAIM="groups", AUTH__SSO__ROLE_MAP=ROLE_MAP)
    app = await started_app(tmp_path, **env)
    async with app.test_app():
        yield app


async def role_after_sign_in(app: Quart, groups: list[str], provider: OIDCProvider) -> str:
    provider.user.groups = groups
    client = app.test_client()
    done = await sign_in_with_school(client)
    assert done.status_code == 302 and done.headers["Location"] == "/", done.headers.get("Location")
    status, body = await me(client)
    assert status == 200
    role: str = body["role"]
    return role


async def test_the_role_claim_sets_the_role_at_every_sign_in(app: Quart, provider: OIDCProvider) -> None:
    # Another administrator exists, so the school's provider may also take the role away again.
    await accounts.register(get_state(app).db, "root@school.test", PASSWORD, "Root", role="admin")

    assert await role_after_sign_in(app, ["teachers"], provider) == "teacher"
    # The highest mapped role wins.
    assert await role_after_sign_in(app, ["students", "it-staff", "teachers"], provider) == "admin"
    assert await role_after_sign_in(app, ["students"], provider) == "learner"
    # A claim that maps to nothing leaves the role as it is, so one set in the administrator's page holds.
    root = app.test_client()
    await root.post("/api/auth/login", json={"email": "root@school.test", "password": PASSWORD})
    [tess] = (await (await root.get("/api/admin/users", query_string={"q": "tess"})).get_json())["users"]
    assert (await root.patch(f"/api/admin/users/{tess['id']}", json={"role": "teacher"})).status_code == 200
    assert await role_after_sign_in(app, ["choir"], provider) == "teacher"


async def test_the_role_claim_never_takes_the_last_administrator(app: Quart, provider: OIDCProvider) -> None:
    assert await role_after_sign_in(app, ["it-staff"], provider) == "admin"
    # Tess is the school's only administrator: the provider saying "student" must not leave the school without one.
    assert await role_after_sign_in(app, ["students"], provider) == "admin"


async def test_single_sign_on_creates_accounts_while_sign_up_is_closed(app: Quart, provider: OIDCProvider) -> None:
    root = app.test_client()
    await accounts.register(get_state(app).db, "root@school.test", PASSWORD, "Root", role="admin")
    await root.post("/api/auth/login", json={"email": "root@school.test", "password": PASSWORD})
    closed = await root.patch("/api/admin/settings", json={"registration_open": False})
    assert (await closed.get_json())["registration_open"] is False

    visitor = app.test_client()
    refused = await visitor.post(
        "/api/auth/register", json={"email": "new@school.test", "password": PASSWORD, "name": "New"}
    )
    assert refused.status_code == 403
    assert (await refused.get_json())["error"]["code"] == "registration_closed"
    # The school's identity provider already says who belongs, so its people still get their account.
    assert await role_after_sign_in(app, ["teachers"], provider) == "teacher"
    listed = await (await root.get("/api/admin/users", query_string={"q": "tess"})).get_json()
    assert [(u["email"], u["sso"], u["role"]) for u in listed["users"]] == [("tess@school.test", True, "teacher")]
