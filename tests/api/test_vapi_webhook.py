"""Hosted mode's webhook: Vapi's server messages store a lesson's start, transcript, length and end reason.

The payloads in tests/fixtures/vapi/ follow Vapi's documented shapes:
- the envelope `{"message": {"type", "call", ...}}`, `status-update` (status, endedReason), `transcript`
  (role, transcriptType partial/final, transcript), `end-of-call-report` (endedReason, artifact.messages
  with roles system/bot/user, artifact.transcript, analysis) and `assistant-request`: Vapi's "Server
  events" page (docs.vapi.ai/server-url/events, VapiAI/docs fern/server-url/events.mdx);
- the fields of each message (timestamp in ms, startedAt/endedAt on the report, the Call object with
  assistant / assistantOverrides, BotMessage time/endTime/secondsFromStart): Vapi's generated Python server
  SDK (VapiAI/server-sdk-python src/vapi/types/server_message_*.py, call.py, bot_message.py);
- durationSeconds on the report: sent though absent from the SDK's types (VapiAI/server-sdk-typescript #26);
- the secret as `X-Vapi-Secret` or `Authorization: Bearer`: "Server authentication"
  (docs.vapi.ai/server-url/server-authentication).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from quart import Quart
from sqlalchemy import select

from server.app import create_app
from server.settings import Settings
from server.state import get_state
from server.store.models import Lesson
from tests.conftest import create_companion, make_settings, register

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vapi"
WEBHOOK = "/api/vapi/webhook"
SECRET = "whsec-test-4f1d2c0b9a"
PRIVATE_KEY = "vapi-private-7e3a51c2"
PUBLIC_KEY = "vapi-public-0c9d"
PUBLIC_URL = "https://tutor.school.example"
CALL_ID = "7c6c1bd4-2c77-4d3b-9d4c-2f6b1c1f0a11"
VOICES = {
    "male.formal": "voice-male-formal-1",
    "male.casual": "voice-male-casual-2",
    "female.formal": "voice-female-formal-3",
    "female.casual": "voice-female-casual-4",
}
AUTH = {"X-Vapi-Secret": SECRET}
# The report's conversation (fixture end-of-call-report.json), without its system message.
REPORT_TRANSCRIPT = [
    ("assistant", "Hello, let's start the session. Today we'll be talking about Neural networks."),
    ("user", "What is a neuron?"),
    ("assistant", "A neuron adds up its inputs and passes the result on."),
    ("user", "Thanks, that helps a lot."),
]


def hosted_settings(tmp_path: Path, database_url: str = "", **extra: str) -> Settings:
    env = {
        "VOICE__BACKEND": "vapi",
        "VAPI__PUBLIC_KEY": PUBLIC_KEY,
        "VAPI__PRIVATE_KEY": PRIVATE_KEY,
        "VAPI__WEBHOOK_SECRET": SECRET,
        "VAPI__VOICES": json.dumps(VOICES),
        "VAPI__MODEL_PROVIDER": "openai",
        "VAPI__MODEL": "gpt-4o",
        "SERVER__PUBLIC_URL": PUBLIC_URL,
        # These tests are about what the webhook stores; a hosted lesson's recap (written from its end-of-call
        # report) is tested with the scripted model in tests/test_recaps.py.
        "RECAPS__ENABLED": "false",
    }
    if database_url:
        env["DATABASE__URL"] = database_url
    env.update(extra)
    return make_settings(tmp_path, **env)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return hosted_settings(tmp_path, database_url)


@pytest.fixture
async def app(settings: Settings) -> Any:
    app = create_app(settings)
    async with app.test_app():
        yield app


@pytest.fixture
def vapi(new_client: Any) -> TestClientProtocol:
    """Vapi's side: a client without the learner's cookies."""
    client: TestClientProtocol = new_client()
    return client


def payload(name: str, lesson_id: int | None = None, call_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A fixture body with the lesson's id put wherever the call's metadata carries it."""
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())

    def point_at_lesson(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "lessonId" and lesson_id is not None:
                    node[key] = lesson_id
                else:
                    point_at_lesson(value)
        elif isinstance(node, list):
            for item in node:
                point_at_lesson(item)

    point_at_lesson(body)
    if call_id is not None:
        body["message"]["call"]["id"] = call_id
    body["message"].update(fields)
    return body


async def send(vapi: TestClientProtocol, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = await vapi.post(WEBHOOK, json=body, headers=AUTH if headers is None else headers)
    return response.status_code, await response.get_json()


async def start_lesson(client: TestClientProtocol, **companion: Any) -> int:
    await register(client)
    # In hosted mode the voices are vapi.voices' entries.
    created = await create_companion(client, **{"voice": "female.casual", **companion})
    response = await client.post(f"/api/companions/{created['id']}/lessons")
    assert response.status_code == 201
    lesson_id: int = (await response.get_json())["id"]
    return lesson_id


async def lesson_view(client: TestClientProtocol, lesson_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/lessons/{lesson_id}")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


def said(lesson: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["role"], entry["text"]) for entry in lesson["transcript"]]


async def recorded_call(app: Quart, lesson_id: int) -> str | None:
    async with get_state(app).db.read() as session:
        return await session.scalar(select(Lesson.external_call_id).where(Lesson.id == lesson_id))


# --- authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Vapi-Secret": "wrong"},
        {"X-Vapi-Secret": SECRET + "x"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SECRET}"},
        {"X-Vapi-Secret": ""},
    ],
    ids=["none", "wrong-header", "longer", "wrong-bearer", "basic-scheme", "empty"],
)
async def test_missing_or_wrong_secret_is_401_and_stores_nothing(client, vapi, headers):
    lesson_id = await start_lesson(client)
    for name in ("status-update-ended", "transcript-final-user", "end-of-call-report"):
        status, body = await send(vapi, payload(name, lesson_id), headers)
        assert status == 401
        assert body["error"]["code"] == "vapi_unauthorized"
    lesson = await lesson_view(client, lesson_id)
    assert lesson["ended_at"] is None and lesson["end_reason"] is None
    assert lesson["transcript"] == []


async def test_secret_is_checked_before_the_body(vapi):
    # A stranger learns nothing about what the webhook would accept.
    response = await vapi.post(WEBHOOK, data="not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers", [{"X-Vapi-Secret": SECRET}, {"Authorization": f"Bearer {SECRET}"}], ids=["x-vapi", "bearer"]
)
async def test_both_ways_of_sending_the_secret_are_accepted(client, vapi, headers):
    lesson_id = await start_lesson(client)
    status, body = await send(vapi, payload("transcript-final-user", lesson_id), headers)
    assert (status, body) == (200, {"type": "transcript", "outcome": "stored"})


async def test_without_a_configured_secret_every_message_is_refused(tmp_path, client):
    learner_app = client.app
    lesson_id = await start_lesson(client)
    # A second app on the same database, with no secret: even the real secret is refused.
    settings = get_state(learner_app).settings.model_copy(deep=True)
    settings.vapi.webhook_secret = None
    open_app = create_app(settings)
    async with open_app.test_app():
        for headers in ({}, AUTH, {"Authorization": "Bearer "}, {"X-Vapi-Secret": ""}):
            response = await open_app.test_client().post(
                WEBHOOK, json=payload("status-update-ended", lesson_id), headers=headers
            )
            assert response.status_code == 401
            assert (await response.get_json())["error"]["code"] == "vapi_unauthorized"
    assert (await lesson_view(client, lesson_id))["ended_at"] is None


# --- status updates -----------------------------------------------------------------------------------------


async def test_status_updates_mark_the_lesson_started_then_ended(app, client, vapi):
    lesson_id = await start_lesson(client)
    status, body = await send(vapi, payload("status-update-in-progress", lesson_id))
    assert (status, body) == (200, {"type": "status-update", "outcome": "stored"})
    assert await recorded_call(app, lesson_id) == CALL_ID
    assert (await lesson_view(client, lesson_id))["ended_at"] is None

    status, body = await send(vapi, payload("status-update-ended", lesson_id))
    assert (status, body["outcome"]) == (200, "stored")
    lesson = await lesson_view(client, lesson_id)
    assert lesson["end_reason"] == "customer-ended-call"
    assert lesson["ended_at"].startswith("2026-11-25T10:01:33")
    # From the call's own start (10:00:00.000) to its end (10:01:33.600).
    assert lesson["length_seconds"] == 94
    # The lesson has ended: it has no call to start any more.
    assert (await client.get(f"/api/lessons/{lesson_id}/call")).status_code == 409

    # A retried "ended" changes nothing.
    retry = payload("status-update-ended", lesson_id, endedReason="silence-timed-out")
    assert (await send(vapi, retry))[1]["outcome"] == "unchanged"
    assert (await lesson_view(client, lesson_id))["end_reason"] == "customer-ended-call"


async def test_in_progress_after_ended_does_not_reopen(client, vapi):
    lesson_id = await start_lesson(client)
    assert (await send(vapi, payload("status-update-ended", lesson_id)))[0] == 200
    status, body = await send(vapi, payload("status-update-in-progress", lesson_id))
    assert (status, body["outcome"]) == (200, "unchanged")
    lesson = await lesson_view(client, lesson_id)
    assert lesson["ended_at"] is not None
    assert lesson["end_reason"] == "customer-ended-call"


# --- transcripts --------------------------------------------------------------------------------------------


async def test_final_transcripts_are_stored_once_and_partials_not_at_all(client, vapi):
    lesson_id = await start_lesson(client)
    partial = await send(vapi, payload("transcript-partial", lesson_id))
    assert partial == (200, {"type": "transcript", "outcome": "ignored"})
    for name in ("transcript-final-assistant", "transcript-final-user"):
        assert (await send(vapi, payload(name, lesson_id)))[1]["outcome"] == "stored"
    # Vapi retries a delivery it thinks failed: the same payload again adds nothing.
    for name in ("transcript-final-assistant", "transcript-final-user"):
        assert (await send(vapi, payload(name, lesson_id)))[1]["outcome"] == "unchanged"

    lesson = await lesson_view(client, lesson_id)
    assert said(lesson) == REPORT_TRANSCRIPT[:2]
    assert [entry["order"] for entry in lesson["transcript"]] == [1, 2]
    # Stored at the message's own time (timestamp 1795600806100 ms).
    assert lesson["transcript"][0]["at"].startswith("2026-11-25T10:00:06")


async def test_the_same_words_said_again_later_are_a_new_utterance(client, vapi):
    lesson_id = await start_lesson(client)
    first = payload("transcript-final-user", lesson_id, transcript="Yes.")
    later = payload("transcript-final-user", lesson_id, transcript="Yes.", timestamp=1795600870000)
    assert (await send(vapi, first))[1]["outcome"] == "stored"
    assert (await send(vapi, later))[1]["outcome"] == "stored"
    assert said(await lesson_view(client, lesson_id)) == [("user", "Yes."), ("user", "Yes.")]


async def test_text_postgresql_cannot_hold_is_cleaned_not_a_500(client, vapi):
    lesson_id = await start_lesson(client)
    body = payload("transcript-final-user", lesson_id, transcript="What is\x00 a neuron?")
    assert (await send(vapi, body))[1]["outcome"] == "stored"
    ended = payload("status-update-ended", lesson_id, endedReason="silence-timed-out\x00")
    assert (await send(vapi, ended))[1]["outcome"] == "stored"
    lesson = await lesson_view(client, lesson_id)
    assert said(lesson) == [("user", "What is a neuron?")]
    assert lesson["end_reason"] == "silence-timed-out"


# --- the end-of-call report ---------------------------------------------------------------------------------


async def test_report_stores_transcript_length_and_reason_without_duplicates(client, vapi):
    lesson_id = await start_lesson(client)
    for name in ("status-update-in-progress", "transcript-final-assistant", "transcript-final-user"):
        assert (await send(vapi, payload(name, lesson_id)))[0] == 200
    assert (await send(vapi, payload("status-update-ended", lesson_id)))[0] == 200

    status, body = await send(vapi, payload("end-of-call-report", lesson_id))
    assert (status, body) == (200, {"type": "end-of-call-report", "outcome": "stored"})
    lesson = await lesson_view(client, lesson_id)
    # Rebuilt from artifact.messages: the two live utterances are not doubled, the system prompt is not shown.
    assert said(lesson) == REPORT_TRANSCRIPT
    assert [entry["order"] for entry in lesson["transcript"]] == [1, 2, 3, 4]
    assert lesson["transcript"][1]["at"].startswith("2026-11-25T10:00:07.9")
    # The report is the record: its durationSeconds (93.6) and endedReason win over the status update's.
    assert lesson["length_seconds"] == 94
    assert lesson["end_reason"] == "exceeded-max-duration"
    assert lesson["ended_at"].startswith("2026-11-25T10:01:33")

    # A replayed report, a late transcript and a late "ended" leave the record as it is.
    assert (await send(vapi, payload("end-of-call-report", lesson_id)))[1]["outcome"] == "unchanged"
    late = payload("transcript-final-user", lesson_id, transcript="One more thing", timestamp=1795600899000)
    assert (await send(vapi, late))[1]["outcome"] == "unchanged"
    assert (await send(vapi, payload("status-update-ended", lesson_id)))[1]["outcome"] == "unchanged"
    assert await lesson_view(client, lesson_id) == lesson


async def test_report_before_the_live_events_keeps_only_the_report(client, vapi):
    lesson_id = await start_lesson(client)
    assert (await send(vapi, payload("end-of-call-report", lesson_id)))[1]["outcome"] == "stored"
    for name in ("transcript-final-user", "transcript-final-assistant", "status-update-in-progress"):
        status, body = await send(vapi, payload(name, lesson_id))
        assert (status, body["outcome"]) == (200, "unchanged")
    assert (await send(vapi, payload("status-update-ended", lesson_id, endedReason="pipeline-error")))[0] == 200
    lesson = await lesson_view(client, lesson_id)
    assert said(lesson) == REPORT_TRANSCRIPT
    assert lesson["end_reason"] == "exceeded-max-duration"
    assert lesson["length_seconds"] == 94


async def test_report_without_duration_measures_from_its_start_and_end(client, vapi):
    lesson_id = await start_lesson(client)
    body = payload("end-of-call-report", lesson_id)
    for key in ("durationSeconds", "durationMs", "durationMinutes"):
        del body["message"][key]
    body["message"]["endedAt"] = "2026-11-25T10:05:00.000Z"
    assert (await send(vapi, body))[1]["outcome"] == "stored"
    assert (await lesson_view(client, lesson_id))["length_seconds"] == 300


async def test_report_after_the_learner_hung_up_still_records_the_call(client, vapi):
    lesson_id = await start_lesson(client)
    assert (await client.post(f"/api/lessons/{lesson_id}/end")).status_code == 200
    assert (await send(vapi, payload("end-of-call-report", lesson_id)))[1]["outcome"] == "stored"
    lesson = await lesson_view(client, lesson_id)
    assert said(lesson) == REPORT_TRANSCRIPT
    assert lesson["length_seconds"] == 94


# --- which lesson -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["status-update-in-progress", "status-update-ended", "transcript-final-user", "end-of-call-report"],
)
async def test_unknown_lesson_is_404_and_stores_nothing(app, client, vapi, name):
    lesson_id = await start_lesson(client)
    status, body = await send(vapi, payload(name, lesson_id + 1000))
    assert status == 404
    assert body["error"]["code"] == "lesson_not_found"
    assert await recorded_call(app, lesson_id) is None
    lesson = await lesson_view(client, lesson_id)
    assert lesson["transcript"] == [] and lesson["ended_at"] is None


async def test_a_call_that_names_no_lesson_is_404(client, vapi):
    await start_lesson(client)
    body = payload("transcript-final-user")
    del body["message"]["assistant"]
    status, error = await send(vapi, body)
    assert status == 404
    assert "metadata.lessonId" in error["error"]["message"]
    bad_id = payload("transcript-final-user", lesson_id=None)
    bad_id["message"]["assistant"]["metadata"]["lessonId"] = "lesson-one"
    assert (await send(vapi, bad_id))[0] == 404


async def test_a_known_call_finds_its_lesson_without_metadata(client, vapi):
    lesson_id = await start_lesson(client)
    assert (await send(vapi, payload("status-update-in-progress", lesson_id)))[0] == 200
    body = payload("transcript-final-user")
    del body["message"]["assistant"]
    assert (await send(vapi, body))[1]["outcome"] == "stored"
    assert said(await lesson_view(client, lesson_id)) == [("user", "What is a neuron?")]


async def test_another_call_cannot_write_into_a_lesson(client, vapi):
    lesson_id = await start_lesson(client)
    assert (await send(vapi, payload("status-update-in-progress", lesson_id)))[0] == 200
    status, body = await send(vapi, payload("end-of-call-report", lesson_id, call_id="another-call"))
    assert status == 409
    assert body["error"]["code"] == "call_mismatch"
    lesson = await lesson_view(client, lesson_id)
    assert lesson["transcript"] == [] and lesson["ended_at"] is None


# --- everything else ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["speech-update", "hang"])
async def test_unknown_message_types_are_acknowledged_and_ignored(client, vapi, name):
    lesson_id = await start_lesson(client)
    status, body = await send(vapi, payload(name, lesson_id))
    assert (status, body) == (200, {"type": name, "outcome": "ignored"})
    brand_new = {"message": {"type": "some-future-message", "call": {"id": CALL_ID}, "novel": {"x": 1}}}
    assert await send(vapi, brand_new) == (200, {"type": "some-future-message", "outcome": "ignored"})
    lesson = await lesson_view(client, lesson_id)
    assert lesson["transcript"] == [] and lesson["ended_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "status-update"},
        {"message": {}},
        {"message": {"type": ""}},
        {"message": {"type": "transcript", "call": {"id": "x" * 101}}},
        {"message": {"type": "end-of-call-report", "artifact": {"messages": "none"}}},
        ["message"],
    ],
    ids=["empty", "message-not-object", "no-type", "empty-type", "call-id-too-long", "bad-artifact", "list"],
)
async def test_malformed_bodies_are_400_json(vapi, body):
    status, error = await send(vapi, body)
    assert status == 400
    assert {"code", "message"} <= set(error["error"])


async def test_a_body_that_is_not_json_is_400(vapi):
    response = await vapi.post(WEBHOOK, data="{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_json"


# --- the assistant ------------------------------------------------------------------------------------------


def assert_no_secrets(document: Any) -> None:
    text = json.dumps(document)
    assert SECRET not in text
    assert PRIVATE_KEY not in text


@pytest.mark.parametrize("voice", ["male", "female"])
@pytest.mark.parametrize("style", ["formal", "casual"])
async def test_assistant_request_answers_the_lessons_assistant(settings, client, vapi, voice, style):
    lesson_id = await start_lesson(client, voice=f"{voice}.{style}", style=style, duration=20, topic="Photosynthesis")
    status, body = await send(vapi, payload("assistant-request", lesson_id))
    assert status == 200
    assistant = body["assistant"]
    assert assistant["voice"] == {"provider": "11labs", "voiceId": VOICES[f"{voice}.{style}"]}
    assert assistant["model"]["provider"] == "openai" and assistant["model"]["model"] == "gpt-4o"
    system = assistant["model"]["messages"][0]
    assert system["role"] == "system"
    # The same system-prompt template as local mode, filled from the companion, with how it teaches.
    assert (
        system["content"]
        == settings.voice.system_prompt.format(
            name="Neura the Brainy Explorer", subject="science", topic="Photosynthesis", style=style
        )
        + "\n"
        + settings.voice.teaching.explain
    )
    assert f"Keep your style of conversation {style}" in system["content"]
    assert assistant["firstMessage"] == "Hello, let's start the session. Today we'll be talking about Photosynthesis."
    assert assistant["maxDurationSeconds"] == 20 * 60
    assert assistant["metadata"]["lessonId"] == lesson_id
    assert assistant["serverUrl"] == f"{PUBLIC_URL}/api/vapi/webhook"
    assert assistant["transcriber"]["provider"] == "deepgram"
    assert_no_secrets(body)


async def test_assistant_request_for_an_unknown_or_ended_lesson(client, vapi):
    lesson_id = await start_lesson(client)
    status, body = await send(vapi, payload("assistant-request", lesson_id + 1000))
    assert (status, body["error"]["code"]) == (404, "lesson_not_found")
    await send(vapi, payload("status-update-ended", lesson_id))
    status, body = await send(vapi, payload("assistant-request", lesson_id))
    assert (status, body["error"]["code"]) == (409, "lesson_ended")


async def test_call_setup_gives_the_page_the_public_key_and_no_secret(client):
    lesson_id = await start_lesson(client, voice="male.formal", style="formal", duration=15)
    response = await client.get(f"/api/lessons/{lesson_id}/call")
    assert response.status_code == 200
    call = await response.get_json()
    assert call["backend"] == "vapi"
    assert call["public_key"] == PUBLIC_KEY
    assistant = call["assistant"]
    assert assistant["voice"]["voiceId"] == VOICES["male.formal"]
    assert assistant["maxDurationSeconds"] == 900
    assert assistant["metadata"]["lessonId"] == lesson_id
    assert assistant["serverUrl"] == f"{PUBLIC_URL}/api/vapi/webhook"
    assert set(assistant["serverMessages"]) >= {"status-update", "transcript", "end-of-call-report"}
    assert "serverUrlSecret" not in assistant and "server" not in assistant
    assert_no_secrets(call)


async def test_without_a_public_url_the_webhook_address_comes_from_the_request(tmp_path):
    app = create_app(hosted_settings(tmp_path, SERVER__PUBLIC_URL=""))
    async with app.test_app():
        client = app.test_client()
        lesson_id = await start_lesson(client)
        call = await (await client.get(f"/api/lessons/{lesson_id}/call")).get_json()
    assert call["assistant"]["serverUrl"] == "http://localhost/api/vapi/webhook"


async def test_a_configured_credential_is_named_by_id_never_by_secret(tmp_path):
    app = create_app(hosted_settings(tmp_path, VAPI__SERVER_CREDENTIAL_ID="cred-123"))
    async with app.test_app():
        client = app.test_client()
        lesson_id = await start_lesson(client)
        call = await (await client.get(f"/api/lessons/{lesson_id}/call")).get_json()
    assert call["assistant"]["server"] == {"url": f"{PUBLIC_URL}/api/vapi/webhook", "credentialId": "cred-123"}
    assert_no_secrets(call)


async def test_hosted_mode_without_a_public_key_says_so(tmp_path):
    app = create_app(hosted_settings(tmp_path, VAPI__PUBLIC_KEY=""))
    async with app.test_app():
        client = app.test_client()
        lesson_id = await start_lesson(client)
        response = await client.get(f"/api/lessons/{lesson_id}/call")
    assert response.status_code == 503
    assert (await response.get_json())["error"]["code"] == "vapi_not_configured"


async def test_local_webrtc_offer_is_refused_in_hosted_mode(client):
    lesson_id = await start_lesson(client)
    response = await client.post(f"/api/lessons/{lesson_id}/offer", json={"sdp": "v=0", "type": "offer"})
    assert response.status_code == 503
    assert (await response.get_json())["error"]["code"] == "voice_backend_not_local"


async def test_a_long_lessons_report_fits_though_other_routes_stay_at_1_mib(client, vapi):
    lesson_id = await start_lesson(client)
    report = payload("end-of-call-report", lesson_id)
    # Two hours of talk, carried in the report's several copies of the conversation: ~2 MiB.
    report["message"]["padding"] = "word " * 400_000
    status, body = await send(vapi, report)
    assert (status, body["outcome"]) == (200, "stored")
    too_big = await client.post("/api/companions", json={"name": "x" * 2_000_000})
    assert too_big.status_code == 413
    assert (await too_big.get_json())["error"]["code"] == "request_entity_too_large"


async def test_a_hosted_lessons_flagged_utterance_is_stored_as_a_flag(app, client, vapi):
    """Vapi has already spoken by the time its webhook arrives: the flag is noted (action "none"), not acted on."""
    from sqlalchemy import select

    from server.state import get_state
    from server.store.models import SafetyFlag

    lesson_id = await start_lesson(client)
    said_it = payload("transcript-final-user", lesson_id, transcript="Sometimes I want to kill myself.")
    assert (await send(vapi, said_it))[1]["outcome"] == "stored"
    fine = payload("transcript-final-assistant", lesson_id, transcript="Photosynthesis makes sugar from light.")
    assert (await send(vapi, fine))[1]["outcome"] == "stored"
    state = get_state(app)
    await state.extras["safety"].idle()
    async with state.db.read() as session:
        flags = (await session.execute(select(SafetyFlag).where(SafetyFlag.lesson_id == lesson_id))).scalars().all()
    assert [(f.role, f.category, f.severity, f.action, f.source) for f in flags] == [
        ("user", "self_harm", "high", "none", "local")
    ]
