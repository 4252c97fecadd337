"""A property-based pass over the OpenAPI document: no input, signed in or not, gets a 5xx or a non-JSON error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import PASSWORD, make_settings
from tests.support.live_server import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with LiveServer(make_settings(Path(tmp_path_factory.mktemp("fuzz")))) as server:
        with httpx.Client(base_url=server.url) as http:
            response = http.post(
                "/api/auth/register", json={"email": "fuzz@school.test", "password": PASSWORD, "name": "Fuzz"}
            )
            assert response.status_code == 201
            cookie = f"tutor_session={http.cookies['tutor_session']}"
            for i in range(2):
                body = {"name": f"T{i}", "subject": "maths", "topic": "x", "voice": "male", "style": "formal"}
                assert http.post("/api/companions", json={**body, "duration": 5}).status_code == 201
            http.post("/api/companions/1/lessons")
        yield server.url, cookie


def test_no_input_breaks_the_server(live: tuple[str, str]) -> None:
    url, cookie = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        if operation.path == "/api/auth/logout":
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
