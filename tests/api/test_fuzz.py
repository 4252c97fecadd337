"""A property-based pass over the OpenAPI document: no input, signed in or not, gets a 5xx or a non-JSON error.

Alongside it, every JSON operation and query string gets the hostile input found in review (5,000-level nesting,
bad UTF-8, a NUL or a lone surrogate in each field), on SQLite through the live server and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from harness.in_process import InProcessServer
from harness.postgres import PostgresCluster
from server.app import create_app
from tests.conftest import PASSWORD, companion_body, make_settings

WEBHOOK_SECRET = "fuzz-webhook-secret"
HOSTILE_BODIES = {
    "5,000-level nesting": (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    "5,000-level objects": (b'{"a":' * 5000 + b"0" + b"}" * 5000, "invalid_json"),
    "invalid UTF-8": (b'{"x": "\xc3\x28\xff"}', "invalid_json"),
    "NUL in a key": (b'{"\\u0000": 1}', "validation_error"),
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _field_paths(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Iterator[list[str | int]]:
    """Every property path in a request schema (through $refs, unions and arrays), a few levels deep."""
    schema = _resolve(spec, schema)
    for variant in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _field_paths(spec, variant, depth)
    if depth >= 4:
        return
    if "items" in schema:
        for path in _field_paths(spec, schema["items"], depth + 1):
            yield [0, *path]
    for name, sub in schema.get("properties", {}).items():
        yield [name]
        for path in _field_paths(spec, sub, depth + 1):
            yield [name, *path]


def _nest(path: list[str | int], text: str) -> Any:
    value: Any = text
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def hostile_requests(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(method, address, httpx keyword arguments, the error code a 400 must carry) for every operation."""
    for template, operations in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", template)
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    yield method, url, {"params": {parameter["name"]: "a\x00"}}, "validation_error"
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            headers = {"Content-Type": "application/json", "X-Vapi-Secret": WEBHOOK_SECRET}
            # Vapi's webhook strips NUL from its text instead (tests/api/test_vapi_webhook.py).
            nul_cleaned = url == "/api/vapi/webhook"
            for name, (raw, code) in HOSTILE_BODIES.items():
                if not (nul_cleaned and "NUL" in name):
                    yield method, url, {"content": raw, "headers": headers}, code
            seen = set()
            for path in _field_paths(spec, body["schema"]):
                key = ".".join(map(str, path))
                if key in seen:
                    continue
                seen.add(key)
                for text in ("\ud800",) if nul_cleaned else ("a\x00b", "\ud800"):
                    content = json.dumps(_nest(path, text)).encode()
                    yield method, url, {"content": content, "headers": headers}, "validation_error"


def check_hostile(method: str, url: str, status: int, body: Any, code: str) -> str | None:
    """What is wrong with this answer to a hostile request, if anything."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if status != 400 or error.get("code") != code or "message" not in error:
        return f"{method.upper()} {url}: {status} {str(body)[:200]}"
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    settings = make_settings(Path(tmp_path_factory.mktemp("fuzz")), VAPI__WEBHOOK_SECRET=WEBHOOK_SECRET)
    with InProcessServer(settings) as server:
        with httpx.Client(base_url=server.url) as http:
            response = http.post(
                "/api/auth/register", json={"email": "fuzz@school.test", "password": PASSWORD, "name": "Fuzz"}
            )
            assert response.status_code == 201
            cookie = f"tutor_session={http.cookies['tutor_session']}"
            for i in range(2):
                body = {"name": f"T{i}", "subject": "maths", "topic": "x", "style": "formal", "duration": 5}
                assert http.post("/api/companions", json={**body, "voice": "en_US-joe-medium"}).status_code == 201
            http.post("/api/companions/1/lessons")
        yield server.url, cookie


def test_no_input_breaks_the_server(live: tuple[str, str]) -> None:
    url, cookie = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    # The hostile bodies first, while the fuzz session is surely still signed in.
    hostile = list(hostile_requests(httpx.get(f"{url}/openapi.json").json()))
    assert len(hostile) >= 60
    with httpx.Client(base_url=url, headers={"Cookie": cookie}) as http:
        for method, address, request, code in hostile:
            response = http.request(method, address, **request)
            problem = check_hostile(method, address, response.status_code, _json(response), code)
            if problem:
                failures.append(problem)

    for operation in operations:
        # Ending the fuzz session would leave every later operation signed out.
        if operation.path in ("/api/auth/logout", "/api/auth/logout-all"):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, headers={"Cookie": cookie})
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                error = response.json().get("error", {})
                if not {"code", "message"} <= set(error):
                    failures.append(f"{where}: error body without code/message: {response.text[:200]}")

        call()
    assert failures == []


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


@pytest.mark.postgres
async def test_hostile_input_is_a_400_on_postgresql(pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    # PostgreSQL, unlike SQLite, refuses NUL in text, so a NUL that got past parsing was a 500 there.
    settings = make_settings(tmp_path, DATABASE__URL=pg_cluster.new_database(), VAPI__WEBHOOK_SECRET=WEBHOOK_SECRET)
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        account = {"email": "fuzz@school.test", "password": PASSWORD, "name": "Fuzz"}
        assert (await client.post("/api/auth/register", json=account)).status_code == 201
        assert (await client.post("/api/companions", json=companion_body())).status_code == 201
        assert (await client.post("/api/companions/1/lessons")).status_code == 201
        spec = await (await client.get("/openapi.json")).get_json()
        failures = []
        requests = list(hostile_requests(spec))
        assert len(requests) >= 60
        for method, address, request, code in requests:
            response = await client.open(
                address,
                method=method.upper(),
                data=request.get("content", b""),
                headers=request.get("headers", {}),
                query_string=request.get("params"),
            )
            body = await response.get_json() if response.is_json else await response.get_data(as_text=True)
            problem = check_hostile(method, address, response.status_code, body, code)
            if problem:
                failures.append(problem)
        assert failures == []
