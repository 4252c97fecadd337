"""No lesson is wasted on a missing language model: it is refused before it counts, in a learner's words."""

from __future__ import annotations

from pathlib import Path

import pytest
from quart import Quart

from harness.scripted_llm import MODEL_ID, ScriptedLLM, unused_base_url
from server.app import create_app
from server.state import get_state
from tests.conftest import create_companion, make_settings, register

OPERATOR_WORDS = ("TUTOR_", "ollama", "voice.llm", "base_url", "127.0.0.1")


async def _lessons_used(client: object) -> int:
    response = await client.get("/api/me/lessons")  # type: ignore[attr-defined]
    return len((await response.get_json())["items"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"DATABASE__URL": request.getfixturevalue("pg_cluster").new_database()}


async def test_a_lesson_is_refused_before_it_counts_while_no_model_answers(
    tmp_path: Path, db_env: dict[str, str]
) -> None:
    down = unused_base_url()
    settings = make_settings(tmp_path, VOICE__LLM__PROVIDER="openai", VOICE__LLM__BASE_URL=down, **db_env)
    app: Quart = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        await register(client)
        companion = await create_companion(client)
        for _ in range(12):  # more than the free plan's 10 lessons: none of the refusals counted
            response = await client.post(f"/api/companions/{companion['id']}/lessons")
            assert response.status_code == 503
            error = (await response.get_json())["error"]
            assert error["code"] == "llm_unavailable"
            assert "try again" in error["message"].lower()
            assert not any(words in error["message"] for words in OPERATOR_WORDS)
        assert await _lessons_used(client) == 0
        # The operator's side: the reason and what to do are known to the server (log, doctor).
        status = get_state(app).voice.language_model.status
        assert status is not None and not status.available and down in status.detail


async def test_lessons_start_again_once_the_model_answers(tmp_path: Path) -> None:
    with ScriptedLLM(["Hello."]) as llm:
        settings = make_settings(
            tmp_path,
            VOICE__LLM__PROVIDER="openai",
            VOICE__LLM__BASE_URL=llm.base_url,
            VOICE__LLM__MODEL=MODEL_ID,
        )
        app = create_app(settings)
        async with app.test_app():
            client = app.test_client()
            await register(client)
            companion = await create_companion(client)
            url = f"/api/companions/{companion['id']}/lessons"
            assert (await client.post(url)).status_code == 201

            model = get_state(app).voice.language_model
            llm.fail_with_status = 500
            assert not (await model.check(generate=True)).available
            assert (await client.post(url)).status_code == 503

            llm.fail_with_status = None
            assert (await model.check(generate=True)).available
            assert (await client.post(url)).status_code == 201
            assert await _lessons_used(client) == 2


async def test_the_page_is_told_when_the_tutor_is_a_demonstration_model(tmp_path: Path) -> None:
    # Nothing answers at the configured endpoint, so "auto" runs the bundled model in-process.
    settings = make_settings(tmp_path, VOICE__LLM__BASE_URL=unused_base_url())
    app = create_app(settings)
    async with app.test_app():
        body = await (await app.test_client().get("/api/config")).get_json()
        model = body["voice"]["model"]
        assert model["demo"] is True
        assert "demonstration" in model["notice"] and "often wrong" in model["notice"]
        status = get_state(app).voice.language_model.status
        assert status.provider == "embedded" and "demonstration" in status.detail


async def test_a_real_endpoint_carries_no_demonstration_notice(tmp_path: Path) -> None:
    with ScriptedLLM(["Hello."]) as llm:
        settings = make_settings(tmp_path, VOICE__LLM__BASE_URL=llm.base_url, VOICE__LLM__MODEL=MODEL_ID)
        app = create_app(settings)
        async with app.test_app():
            body = await (await app.test_client().get("/api/config")).get_json()
            assert body["voice"]["model"] == {"demo": False, "notice": ""}
            assert get_state(app).voice.language_model.status.provider == "openai"
