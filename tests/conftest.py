"""Shared fixtures: settings on a fresh database (SQLite, and PostgreSQL where marked), the app, a client, sign-up."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol

from harness.postgres import PostgresCluster, find_pg_bin
from harness.scripted_llm import MODEL_ID, ScriptedLLM
from server.app import create_app
from server.settings import Settings, load_settings

PASSWORD = "correct horse battery"


def make_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings for one test: its own data dir (and SQLite file), models not preloaded, plus env-style overrides."""
    values = {
        "TUTOR_SERVER__DATA_DIR": str(tmp_path / "data"),
        "TUTOR_VOICE__PRELOAD": "false",
        "TUTOR_DATABASE__AUTO_MIGRATE": "true",
    }
    values.update({k if k.startswith("TUTOR_") else f"TUTOR_{k}": v for k, v in env.items()})
    return load_settings(None, values)


def scripted_model_settings(tmp_path: Path, database_url: str, llm: ScriptedLLM, **env: str) -> Settings:
    """Settings whose language model is the scripted one at `llm` (no safety classifier), on either database."""
    values = {
        "VOICE__LLM__PROVIDER": "openai",
        "VOICE__LLM__BASE_URL": llm.base_url,
        "VOICE__LLM__MODEL": MODEL_ID,
        "SAFETY__CLASSIFIER": "off",
        **env,
    }
    if database_url:
        values["DATABASE__URL"] = database_url
    return make_settings(tmp_path, **values)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if find_pg_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL binaries not installed (CI installs them)")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, DATABASE__URL=database_url) if database_url else make_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: Quart) -> TestClientProtocol:
    return app.test_client()


@pytest.fixture
def new_client(app: Quart) -> Any:
    """A second browser: its own cookie jar."""
    return app.test_client


async def register(
    client: TestClientProtocol, email: str = "ann@school.test", name: str = "Ann", password: str = PASSWORD
) -> dict[str, Any]:
    """Sign up through the real route; the client keeps the session cookie."""
    response = await client.post("/api/auth/register", json={"email": email, "password": password, "name": name})
    assert response.status_code == 201, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


def companion_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Neura the Brainy Explorer",
        "subject": "science",
        "topic": "Neural networks",
        "voice": "en_US-joe-medium",  # the bundled voice: installed everywhere
        "style": "casual",
        "duration": 15,
    }
    body.update(overrides)
    return body


async def create_companion(client: TestClientProtocol, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/companions", json=companion_body(**overrides))
    assert response.status_code == 201, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def set_plan(app: Quart, email: str, plan: str) -> None:
    from server import accounts
    from server.state import get_state

    await accounts.set_plan(get_state(app).db, email, plan)


async def sign_in_as(
    app: Quart, client: TestClientProtocol, email: str, role: str, name: str | None = None
) -> dict[str, Any]:
    """Create an account with a role (as an administrator would: teachers and admins do not sign themselves up),
    then sign in through the real route; the client keeps the session cookie."""
    from server import accounts
    from server.state import get_state

    await accounts.register(get_state(app).db, email, PASSWORD, name or email.split("@")[0].title(), role=role)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body
