"""Single sign-on through the whole redirect flow against a real OpenID Connect provider on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Browser
from quart.wrappers import Response

from harness.oidc_provider import OIDCProvider, ProviderUser
from server import accounts
from server.app import create_app
from server.state import get_state
from tests.conftest import PASSWORD, make_settings, register

CLIENT_ID = "voice-tutor"
CLIENT_SECRET = "a-test-client-secret"
PUBLIC_URL = "http://tutor.test"
CALLBACK = f"{PUBLIC_URL}/api/auth/sso/callback"


def sso_env(issuer: str, **extra: str) -> dict[str, str]:
    env = {
        "AUTH__SSO__ENABLED": "true",
        "AUTH__SSO__ISSUER": issuer,
        "AUTH__SSO__CLIENT_ID": CLIENT_ID,
        "AUTH__SSO__CLIENT_SECRET": CLIENT_SECRET,
        "AUTH__SSO__PLAN_CLAIM": "groups",
        "AUTH__SSO__PLAN_MAP": '{"teachers": "pro", "staff": "core"}',
        "SERVER__PUBLIC_URL": PUBLIC_URL,
    }
    env.update(extra)
    return env


async def started_app(tmp_path: Path, **env: str) -> Quart:
    return create_app(make_settings(tmp_path, **env))


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    user = ProviderUser(sub="school-42", email="Bea@School.test", name="Bea Teacher", groups=["students"])
    with OIDCProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[CALLBACK, "http://localhost/api/auth/sso/callback"],
        user=user,
    ) as running:
        yield running


@pytest.fixture
async def app(tmp_path: Path, provider: OIDCProvider) -> AsyncIterator[Quart]:
    app = await started_app(tmp_path, **sso_env(provider.issuer))
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: Quart) -> Browser:
    return app.test_client()


async def start_login(client: Browser, next_path: str | None = None) -> str:
    """Click "Sign in with your school": the provider's authorize URL our server redirects to."""
    query = {"next": next_path} if next_path is not None else {}
    response = await client.get("/api/auth/sso/login", query_string=query)
    assert response.status_code == 302, await response.get_data(as_text=True)
    return response.headers["Location"]


async def at_provider(authorize_url: str) -> str:
    """The browser at the provider, which approves at once: the callback URL it sends the browser back to."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(authorize_url)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


async def back_at_tutor(client: Browser, callback_url: str) -> Response:
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" in (CALLBACK, "http://localhost/api/auth/sso/callback")
    response: Response = await client.get(f"{parts.path}?{parts.query}")
    return response


async def sign_in_with_school(client: Browser, next_path: str | None = None) -> Response:
    return await back_at_tutor(client, await at_provider(await start_login(client, next_path)))


def signin_error(response: Response) -> str:
    """The reason our server gave the sign-in page, from a redirect to /signin?error=..."""
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/signin" and not location.netloc
    return parse_qs(location.query)["error"][0]


async def me(client: Browser) -> tuple[int, dict[str, Any]]:
    response = await client.get("/api/me")
    body: dict[str, Any] = await response.get_json()
    return response.status_code, body


def replace_query(url: str, **values: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(values)
    return parts._replace(query=urlencode(query)).geturl()


async def test_first_sign_in_creates_the_account_and_signs_in(client: Browser, provider: OIDCProvider) -> None:
    authorize_url = await start_login(client)
    assert authorize_url.startswith(f"{provider.issuer}/authorize?")
    params = parse_qs(urlsplit(authorize_url).query)
    assert params["client_id"] == [CLIENT_ID]
    assert params["redirect_uri"] == [CALLBACK]
    assert params["response_type"] == ["code"]
    assert set(params["scope"][0].split()) == {"openid", "email", "profile"}
    assert params["code_challenge_method"] == ["S256"] and params["nonce"][0] and params["state"][0]

    done = await back_at_tutor(client, await at_provider(authorize_url))

    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert "tutor_session" in done.headers.get("Set-Cookie", "")
    status, body = await me(client)
    assert status == 200
    assert body["email"] == "bea@school.test"
    assert body["name"] == "Bea Teacher"
    assert body["sso"] is True
    # "students" maps to no plan, so a new account gets the default.
    assert body["plan"] == "free"


async def test_second_sign_in_reuses_the_account(app: Quart, provider: OIDCProvider) -> None:
    first, second = app.test_client(), app.test_client()
    await sign_in_with_school(first)
    await sign_in_with_school(second)

    (_, one), (_, two) = await me(first), await me(second)
    assert one["id"] == two["id"]
    users = await accounts.list_users(get_state(app).db)
    assert [u.email for u in users] == ["bea@school.test"]


async def test_group_claim_maps_to_the_highest_plan(app: Quart, provider: OIDCProvider) -> None:
    client = app.test_client()
    provider.user.groups = ["students", "staff", "teachers"]
    await sign_in_with_school(client)
    _, body = await me(client)
    assert body["plan"] == "pro"
    assert body["usage"]["companions"]["limit"] is None

    # The school moved Bea to staff only: the next sign-in follows.
    provider.user.groups = ["staff"]
    await sign_in_with_school(client)
    _, body = await me(client)
    assert body["plan"] == "core"

    # A claim that maps to nothing leaves the plan alone (an administrator may have set it).
    provider.user.groups = ["students"]
    await sign_in_with_school(client)
    _, body = await me(client)
    assert body["plan"] == "core"


async def test_claims_missing_from_the_id_token_come_from_userinfo(client: Browser, provider: OIDCProvider) -> None:
    provider.profile_in_id_token = False
    provider.user.groups = ["teachers"]

    done = await sign_in_with_school(client)

    assert done.headers["Location"] == "/"
    _, body = await me(client)
    assert (body["email"], body["name"], body["plan"]) == ("bea@school.test", "Bea Teacher", "pro")


@pytest.mark.parametrize(
    ("asked", "landed"),
    [
        ("/companions/3?tab=lessons", "/companions/3?tab=lessons"),
        ("https://evil.test/phish", "/"),
        ("//evil.test/phish", "/"),
        ("/\\evil.test", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
async def test_lands_on_the_page_it_came_from_but_never_off_site(client: Browser, asked: str, landed: str) -> None:
    done = await sign_in_with_school(client, asked)
    assert done.status_code == 302
    assert done.headers["Location"] == landed


async def test_callback_with_a_wrong_state_is_refused(app: Quart, provider: OIDCProvider) -> None:
    client = app.test_client()
    callback_url = await at_provider(await start_login(client))

    refused = await back_at_tutor(client, replace_query(callback_url, state="forged-state"))
    assert signin_error(refused) == "sso_state_mismatch"
    assert (await me(client))[0] == 401

    # The same callback in another browser (which never started a sign-in) does not sign that browser in.
    other = app.test_client()
    assert signin_error(await back_at_tutor(other, callback_url)) == "sso_state_mismatch"
    assert (await me(other))[0] == 401
    assert provider.token_requests == 0


async def test_a_callback_url_works_once(client: Browser) -> None:
    callback_url = await at_provider(await start_login(client))
    assert (await back_at_tutor(client, callback_url)).headers["Location"] == "/"
    await client.post("/api/auth/logout")

    replayed = await back_at_tutor(client, callback_url)

    assert signin_error(replayed) == "sso_state_mismatch"
    assert (await me(client))[0] == 401


async def test_expired_code_fails_cleanly(client: Browser, provider: OIDCProvider) -> None:
    callback_url = await at_provider(await start_login(client, "/library"))
    provider.expire_codes()

    done = await back_at_tutor(client, callback_url)

    assert signin_error(done) == "sso_exchange_failed"
    assert parse_qs(urlsplit(done.headers["Location"]).query)["next"] == ["/library"]
    assert (await me(client))[0] == 401


async def test_tampered_code_fails_cleanly(client: Browser) -> None:
    callback_url = await at_provider(await start_login(client))

    done = await back_at_tutor(client, replace_query(callback_url, code="not-the-code-we-were-given"))

    assert signin_error(done) == "sso_exchange_failed"
    assert (await me(client))[0] == 401


async def test_learner_who_cancels_at_the_provider_is_told_so(client: Browser, provider: OIDCProvider) -> None:
    provider.approve = False

    done = await sign_in_with_school(client)

    assert signin_error(done) == "sso_denied"
    assert (await me(client))[0] == 401


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param({"id_token_overrides": {"aud": ["some-other-app"]}}, id="audience"),
        pytest.param({"id_token_overrides": {"iss": "http://127.0.0.1:1/"}}, id="issuer"),
        pytest.param({"id_token_overrides": {"nonce": "another-sign-in"}}, id="nonce"),
        pytest.param({"id_token_overrides": {"exp": 1_000_000_000}}, id="expired"),
        pytest.param({"sign_with_unpublished_key": True}, id="signature"),
    ],
)
async def test_an_id_token_that_fails_validation_signs_no_one_in(
    app: Quart, provider: OIDCProvider, breakage: dict[str, Any]
) -> None:
    for name, value in breakage.items():
        setattr(provider, name, value)
    client = app.test_client()

    done = await sign_in_with_school(client)

    assert signin_error(done) == "sso_invalid_token"
    assert (await me(client))[0] == 401
    assert await accounts.list_users(get_state(app).db) == []


async def test_unverified_email_is_not_linked_to_a_local_account(app: Quart, provider: OIDCProvider) -> None:
    local = app.test_client()
    await register(local, email="bea@school.test", name="Local Bea")
    provider.user.email_verified = False
    client = app.test_client()

    await sign_in_with_school(client)

    _, body = await me(client)
    assert body["email"] != "bea@school.test"
    login = await app.test_client().post("/api/auth/login", json={"email": "bea@school.test", "password": PASSWORD})
    assert login.status_code == 200
    assert (await login.get_json())["id"] != body["id"]


async def test_email_of_another_sso_account_is_refused(app: Quart, provider: OIDCProvider) -> None:
    await sign_in_with_school(app.test_client())
    provider.user = ProviderUser(sub="school-99", email="bea@school.test", name="Someone Else")
    client = app.test_client()

    done = await sign_in_with_school(client)

    assert signin_error(done) == "sso_email_taken"
    assert (await me(client))[0] == 401


async def test_redirect_uri_follows_the_request_host_without_public_url(tmp_path: Path, provider: OIDCProvider) -> None:
    app = await started_app(tmp_path, **sso_env(provider.issuer, SERVER__PUBLIC_URL=""))
    async with app.test_app():
        client = app.test_client()
        authorize_url = await start_login(client)
        assert parse_qs(urlsplit(authorize_url).query)["redirect_uri"] == ["http://localhost/api/auth/sso/callback"]
        done = await back_at_tutor(client, await at_provider(authorize_url))
        assert done.headers["Location"] == "/"
        assert (await me(client))[0] == 200


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_provider_sends_the_learner_back_with_a_reason(tmp_path: Path) -> None:
    app = await started_app(tmp_path, **sso_env(f"http://127.0.0.1:{closed_port()}"))
    async with app.test_app():
        client = app.test_client()
        response = await client.get("/api/auth/sso/login", query_string={"next": "/library"})
        assert signin_error(response) == "sso_unavailable"
        assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["/library"]


@pytest.mark.parametrize("path", ["/api/auth/sso/login", "/api/auth/sso/callback?code=x&state=y"])
async def test_sso_routes_are_404_when_sso_is_off(tmp_path: Path, path: str) -> None:
    app = await started_app(tmp_path)
    async with app.test_app():
        response = await app.test_client().get(path)
        assert response.status_code == 404
        body = await response.get_json()
        assert body["error"]["code"] == "sso_disabled"
        assert body["error"]["message"]
