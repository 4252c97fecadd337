"""Cross-site writes are refused, every answer carries the security headers, and hostile input is a 400."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol

from server.app import create_app
from tests.conftest import PASSWORD, companion_body, create_companion, make_settings, register

SAFE = {"GET", "HEAD", "OPTIONS"}
# A page on another port of the same host is the same site but another origin: SameSite cookies still go along.
SAME_SITE_ORIGIN = "http://127.0.0.1:9999"
CROSS_SITE = [
    {"Origin": SAME_SITE_ORIGIN},
    {"Origin": "null"},
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    # A browser sending our Host but another Origin is still another origin.
    {"Origin": SAME_SITE_ORIGIN, "Sec-Fetch-Site": "same-origin"},
]
# The test client's requests are for http://localhost.
OWN_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


def _url(rule: str) -> str:
    """A concrete address for a url_map rule: every id 1, every other part a plain word."""
    return re.sub(r"<(?:int:)?[^>]+>", lambda m: "1" if m.group(0).startswith("<int:") else "x", rule)


def state_changing_routes(app: Quart) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api/vapi/webhook":
            continue
        for method in sorted((rule.methods or set()) - SAFE):
            routes.append((method, _url(rule.rule)))
    return routes


async def _error(response: Any) -> dict[str, Any]:
    body = await response.get_json()
    assert isinstance(body, dict) and {"code", "message"} <= set(body["error"]), body
    error: dict[str, Any] = body["error"]
    return error


# -- cross-site requests ------------------------------------------------------------------------------------------


async def test_every_state_changing_route_refuses_another_origin_and_keeps_the_learner_signed_in(
    app: Quart, client: TestClientProtocol
) -> None:
    await register(client)
    companion = await create_companion(client)
    routes = state_changing_routes(app)
    # The url_map is the list, so a new route cannot be missed; these are the ones the issue found.
    for expected in [
        ("POST", "/api/companions/1/lessons"),
        ("POST", "/api/lessons/1/end"),
        ("POST", "/api/auth/logout"),
    ]:
        assert expected in routes
    for method, url in routes:
        for headers in CROSS_SITE:
            response = await client.open(url, method=method, headers=headers, json={})
            assert response.status_code == 403, (method, url, headers, await response.get_data(as_text=True))
            assert (await _error(response))["code"] == "cross_origin_refused"
            assert response.headers.get_all("Set-Cookie") == [], (method, url, headers)

    # Still signed in, no lesson was started, and the companion was neither changed nor deleted.
    me = await client.get("/api/me")
    assert me.status_code == 200
    assert (await (await client.get("/api/me/lessons")).get_json())["items"] == []
    assert (await (await client.get(f"/api/companions/{companion['id']}")).get_json())["name"] == companion["name"]


async def test_our_own_origin_and_non_browser_clients_pass(client: TestClientProtocol) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "own@school.test", "password": PASSWORD, "name": "Own"},
        headers=OWN_ORIGIN,
    )
    assert response.status_code == 201
    companion = await create_companion(client)
    started = await client.post(f"/api/companions/{companion['id']}/lessons", headers=OWN_ORIGIN)
    assert started.status_code == 201
    # No Origin and Sec-Fetch-Site "none" (typed by the learner) pass too; the default port is the same origin.
    ended = await client.post(
        f"/api/lessons/{(await started.get_json())['id']}/end", headers={"Sec-Fetch-Site": "none"}
    )
    assert ended.status_code == 200
    assert (await client.post("/api/auth/logout", headers={"Origin": "HTTP://LOCALHOST:80"})).status_code == 204
    assert (await client.get("/api/me")).status_code == 401


async def test_public_url_is_the_origin_that_counts_behind_a_proxy(tmp_path: Any, database_url: str) -> None:
    env = {"SERVER__PUBLIC_URL": "https://tutor.school.example/"}
    if database_url:
        env["DATABASE__URL"] = database_url
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        client = app.test_client()
        body = {"email": "proxy@school.test", "password": PASSWORD, "name": "Proxy"}
        # The proxy hands us its own Host (localhost here): the request's address no longer proves anything.
        refused = await client.post("/api/auth/register", json=body, headers={"Origin": "http://localhost"})
        assert refused.status_code == 403
        # The refused attempt stored nothing, so the address is still free.
        passed = await client.post("/api/auth/register", json=body, headers={"Origin": "https://tutor.school.example"})
        assert passed.status_code == 201
        out = await client.post("/api/auth/logout", headers={"Origin": "https://tutor.school.example"})
        assert out.status_code == 204


async def test_the_vapi_webhook_answers_for_itself(client: TestClientProtocol) -> None:
    # Vapi's servers are no browser: the webhook checks its secret instead of the origin.
    response = await client.post("/api/vapi/webhook", json={}, headers={"Origin": "https://api.vapi.ai"})
    assert response.status_code == 401
    assert (await _error(response))["code"] == "vapi_unauthorized"


# -- security headers ---------------------------------------------------------------------------------------------


def _assert_headers(response: Any, where: str) -> str:
    headers = response.headers
    policy: str = headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert "script-src" in directives and "'unsafe-inline'" not in directives["script-src"], where
    assert "'unsafe-eval'" not in directives["script-src"], where
    assert directives.get("object-src") == ["'none'"], where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", where
    assert headers.get("Permissions-Policy") == "microphone=(self), camera=(), geolocation=()", where
    return policy


async def test_every_answer_carries_the_security_headers(client: TestClientProtocol) -> None:
    answers = {
        "page": await client.get("/"),
        "page route": await client.get("/companions/new"),
        "script": await client.get("/app.js"),
        "stylesheet": await client.get("/style.css"),
        "api": await client.get("/api/config"),
        "health": await client.get("/healthz"),
        "missing file": await client.get("/nope.js"),
        "unknown api": await client.get("/api/nope"),
        "signed out": await client.get("/api/me"),
        "bad json": await client.post("/api/auth/login", data=b"{", headers={"Content-Type": "application/json"}),
        "refused": await client.post("/api/auth/logout", headers={"Origin": SAME_SITE_ORIGIN}),
        "method not allowed": await client.delete("/api/config"),
    }
    for where, response in answers.items():
        policy = _assert_headers(response, where)
        assert "script-src 'self';" in policy and "connect-src 'self';" in policy, where
    assert answers["page"].status_code == 200 and answers["refused"].status_code == 403


async def test_the_docs_page_allows_only_its_own_inline_script_and_style(client: TestClientProtocol) -> None:
    response = await client.get("/docs")
    policy = _assert_headers(response, "docs")
    html = await response.get_data(as_text=True)
    for tag in ("script", "style"):
        inline = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        assert inline is not None
        digest = base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy
    assert "connect-src 'self'" in policy and "'unsafe-inline'" not in policy


async def test_hosted_mode_lets_the_vapi_sdk_reach_vapi_and_daily_only_then(tmp_path: Any) -> None:
    local = create_app(make_settings(tmp_path / "local"))
    hosted = create_app(
        make_settings(tmp_path / "hosted", VOICE__BACKEND="vapi", VAPI__SDK_URL="https://cdn.school.example/vapi.js")
    )
    policies = {}
    for name, app in (("local", local), ("hosted", hosted)):
        async with app.test_app():
            policies[name] = _assert_headers(await app.test_client().get("/"), name)
    assert "daily.co" not in policies["local"] and "vapi.ai" not in policies["local"]
    directives = {part.split()[0]: part.split()[1:] for part in policies["hosted"].split(";")}
    assert {"'self'", "https://c.daily.co", "https://cdn.school.example"} <= set(directives["script-src"])
    assert {"https://api.vapi.ai", "https://*.daily.co", "wss://*.daily.co"} <= set(directives["connect-src"])


# -- hostile input ------------------------------------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}


async def test_deep_nesting_and_bad_utf8_are_a_400_on_every_json_route(client: TestClientProtocol) -> None:
    await register(client)
    companion = await create_companion(client)
    routes = [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/companions"),
        ("PATCH", f"/api/companions/{companion['id']}"),
        ("POST", "/api/lessons/1/offer"),
        ("PATCH", "/api/lessons/1/offer"),
    ]
    bodies = {
        "deep array": (DEEP, "nested more than 64 levels"),
        "deep object": (DEEP_OBJECT, "nested more than 64 levels"),
        "bad utf-8": (b'{"name": "\xff\xfe caf\xe9"}', "not valid UTF-8 JSON"),
        "not json": (b'{"name": NaN}', "not valid JSON"),
    }
    for method, url in routes:
        for name, (body, message) in bodies.items():
            response = await client.open(url, method=method, data=body, headers=JSON)
            assert response.status_code == 400, (method, url, name, await response.get_data(as_text=True))
            error = await _error(response)
            assert error["code"] == "invalid_json" and message in error["message"], (method, url, name, error)
    mine = await (await client.get("/api/me/companions")).get_json()
    assert mine["total"] == 1 and mine["items"][0]["name"] == companion["name"]


async def _post_nul(client: TestClientProtocol, method: str, url: str, body: dict[str, Any], field: str) -> None:
    response = await client.open(url, method=method, json={**body, field: f"a{chr(0)}b"})
    assert response.status_code == 400, (url, field, await response.get_data(as_text=True))
    error = await _error(response)
    assert error["code"] == "validation_error" and error["fields"] == {field: "must not contain NUL characters"}


async def test_a_nul_character_in_any_text_is_a_400_and_nothing_is_stored(client: TestClientProtocol) -> None:
    account = {"email": "nul@school.test", "password": PASSWORD, "name": "Nul"}
    for field in account:
        await _post_nul(client, "POST", "/api/auth/register", account, field)
    # The first attempts stored nothing: the address is still free.
    assert (await client.post("/api/auth/register", json=account)).status_code == 201
    for field in ("email", "password"):
        await _post_nul(client, "POST", "/api/auth/login", {"email": account["email"], "password": PASSWORD}, field)

    body = companion_body()
    for field in ("name", "subject", "topic", "voice", "style"):
        await _post_nul(client, "POST", "/api/companions", body, field)
    assert (await (await client.get("/api/me/companions")).get_json())["total"] == 0
    companion = await create_companion(client)
    for field in ("name", "topic"):
        await _post_nul(client, "PATCH", f"/api/companions/{companion['id']}", {}, field)
    stored = await (await client.get(f"/api/companions/{companion['id']}")).get_json()
    assert (stored["name"], stored["topic"]) == (companion["name"], companion["topic"])

    # A key with a NUL, and a lone surrogate (valid JSON, not storable text), are refused the same way.
    keyed = await client.post("/api/companions", data=b'{"na\\u0000me": "x"}', headers=JSON)
    assert keyed.status_code == 400 and (await _error(keyed))["code"] == "validation_error"
    surrogate = await client.post("/api/companions", data=b'{"name": "\\ud800"}', headers=JSON)
    assert (await _error(surrogate))["fields"] == {"name": "must be valid Unicode text"}

    # Search and every other query string; a NUL in the address itself.
    for query in ({"topic": "a\x00"}, {"subject": "\x00"}, {"sort": "recent\x00"}, {"to\x00pic": "a"}):
        response = await client.get("/api/companions", query_string=query)
        assert response.status_code == 400, query
        assert (await _error(response))["code"] == "validation_error"
    assert (await client.get("/api/me/lessons", query_string={"limit": "1\x00"})).status_code == 400
    for path in ("/nope%00.js", "/companions%00", "/api/companions/1%00"):
        response = await client.get(path)
        assert response.status_code == 400, path
        assert (await _error(response))["code"] == "invalid_path"
    assert (await (await client.get("/api/me/companions")).get_json())["total"] == 1


@pytest.mark.parametrize("depth", [64, 65])
async def test_the_nesting_limit_is_64_levels(client: TestClientProtocol, depth: int) -> None:
    # Within the limit the body reaches validation (which names the bad field); past it, the parser refuses.
    body = b'{"name": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    response = await client.post("/api/auth/login", data=body, headers=JSON)
    assert response.status_code == 400
    assert (await _error(response))["code"] == ("validation_error" if depth == 64 else "invalid_json")
