"""Recaps after every lesson and the tutor's memory across lessons, through the real routes on both databases: the
recap is what the scripted model wrote from the transcript it was sent, a short lesson says so without asking
the model, a bad answer is a failure (never an invented recap), and each learner sees and deletes only their own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol

from harness.scripted_llm import MODEL_ID, ScriptedLLM
from server import instances, lessons, recaps
from server.app import create_app
from server.lesson_brief import brief_lesson
from server.lesson_recorder import stored_lessons
from server.settings import Settings
from server.state import get_state
from tests.api.test_vapi_webhook import REPORT_TRANSCRIPT, hosted_settings, payload, send
from tests.conftest import create_companion, make_settings, register, scripted_model_settings

FACTS = ["Beginner in neural networks", "Likes football examples"]
RECAP = {
    "covered": "how a neuron adds up weighted inputs and what the bias does",
    "hard": "Telling the bias apart from the weights.",
    "questions": ["What does a weight do?", "What does the bias add?", "What does the activation decide?"],
    "facts": FACTS,
}
LINES = [
    ("assistant", "Hello, let's start the session. Today we'll be talking about Neural networks."),
    ("user", "What does a neuron do with its inputs?"),
    ("assistant", "It multiplies each input by a weight and adds them up, then adds a bias."),
    ("user", "So the bias is just another weight, like in football scores?"),
    ("assistant", "Not quite: the bias is added on its own, whatever the inputs are."),
]


class Model:
    """The scripted model: recap requests get `answer` (a dict is sent as JSON), lesson requests a short reply."""

    def __init__(self) -> None:
        self.answer: Any = RECAP
        self.recap_requests: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        if messages and str(messages[0].get("content", "")).startswith(recaps.RECAP_PROMPT[:40]):
            self.recap_requests.append(messages)
            return self.answer if isinstance(self.answer, str) else json.dumps(self.answer)
        return "Sure."


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def llm(model: Model) -> Iterator[ScriptedLLM]:
    with ScriptedLLM(model) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, database_url: str, llm: ScriptedLLM) -> Settings:
    return scripted_model_settings(tmp_path, database_url, llm)


def worker(app: Quart) -> recaps.Recaps:
    found: recaps.Recaps = get_state(app).extras[recaps.EXTRAS_KEY]
    return found


async def held_lesson(
    app: Quart,
    client: TestClientProtocol,
    lines: list[tuple[str, str]],
    companion_id: int | None = None,
    within: float = 30.0,
) -> tuple[int, int]:
    """A lesson of the signed-in learner with this transcript, ended as a live lesson ends (its recorder);
    returns (lesson id, companion id) once its recap is written."""
    if companion_id is None:
        companion_id = (await create_companion(client))["id"]
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    lesson_id: int = (await response.get_json())["id"]
    state = get_state(app)
    recorder = stored_lessons(state.db, None, recaps=worker(app))(lesson_id)
    for role, text in lines:
        await recorder.on_utterance(role, text, ())  # type: ignore[arg-type]
    await recorder.on_ended("customer-ended-call")
    await worker(app).idle(within)
    return lesson_id, companion_id


async def lesson_of(client: TestClientProtocol, lesson_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/lessons/{lesson_id}")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def test_the_recap_is_what_the_model_wrote_from_the_lessons_transcript(
    app: Quart, client: TestClientProtocol, model: Model
) -> None:
    await register(client)
    lesson_id, companion_id = await held_lesson(app, client, LINES)

    # The model was sent the stored transcript, line by line, and was asked once.
    [request] = model.recap_requests
    sent = request[-1]["content"]
    for role, text in LINES:
        assert f"{'Learner' if role == 'user' else 'Tutor'}: {text}" in sent
    assert "Neural networks" in sent

    recap = (await lesson_of(client, lesson_id))["recap"]
    assert recap["status"] == "ready"
    assert recap["covered"] == RECAP["covered"]
    assert recap["hard"] == RECAP["hard"]
    assert recap["questions"] == RECAP["questions"]
    assert recap["model"] == MODEL_ID and recap["notice"] == ""

    # My journey's list shows what it covered; the facts the model kept are the learner's to see.
    listed = (await (await client.get("/api/me/lessons")).get_json())["items"]
    assert [item["recap_summary"] for item in listed] == [RECAP["covered"]]
    facts = (await (await client.get(f"/api/me/facts?companion_id={companion_id}")).get_json())["facts"]
    assert [f["text"] for f in facts] == FACTS
    assert {f["companion_id"] for f in facts} == {companion_id}

    # The next recap is asked with those facts, so the model can keep them up to date.
    model.answer = {**RECAP, "facts": ["Beginner in neural networks", "Now tells weights from the bias"]}
    await held_lesson(app, client, LINES, companion_id)
    assert "- Likes football examples" in model.recap_requests[-1][-1]["content"]
    facts = (await (await client.get("/api/me/facts")).get_json())["facts"]
    assert [f["text"] for f in facts] == ["Beginner in neural networks", "Now tells weights from the bias"]


async def test_a_lesson_too_short_to_recap_says_so_without_asking_the_model(
    app: Quart, client: TestClientProtocol, model: Model
) -> None:
    await register(client)
    lesson_id, _ = await held_lesson(app, client, LINES[:2])
    recap = (await lesson_of(client, lesson_id))["recap"]
    assert recap["status"] == "too_short"
    assert recap["covered"] == Settings().recaps.too_short_message
    assert recap["questions"] == [] and recap["hard"] == ""
    assert model.recap_requests == []
    listed = (await (await client.get("/api/me/lessons")).get_json())["items"]
    assert listed[0]["recap_summary"] == Settings().recaps.too_short_message


@pytest.mark.parametrize(
    "answer",
    [
        "Sure! The lesson was about neurons.",
        {"covered": "how neurons work", "hard": "", "questions": ["Only one?"]},
        {**RECAP, "covered": "the French revolution and Napoleon"},
        {**RECAP, "questions": ["Neural networks", "Neural networks"]},
        {**RECAP, "questions": ["What does a weight do?", "what does a weight do?"]},
        {**RECAP, "covered": "Last time we covered ..."},
    ],
    ids=["not-json", "one-question", "not-from-the-transcript", "not-questions", "the-same-question", "echo"],
)
async def test_an_answer_that_is_not_a_recap_is_a_failure_and_writing_it_again_works(
    app: Quart, client: TestClientProtocol, model: Model, answer: Any
) -> None:
    await register(client)
    model.answer = answer
    lesson_id, _ = await held_lesson(app, client, LINES)
    recap = (await lesson_of(client, lesson_id))["recap"]
    assert recap["status"] == "failed"
    assert (recap["covered"], recap["hard"], recap["questions"]) == ("", "", [])
    assert (await (await client.get("/api/me/facts")).get_json())["facts"] == []

    model.answer = RECAP
    response = await client.post(f"/api/lessons/{lesson_id}/recap")
    assert response.status_code == 202
    assert (await response.get_json())["status"] == "pending"
    await worker(app).idle()
    recap = (await lesson_of(client, lesson_id))["recap"]
    assert recap["status"] == "ready" and recap["covered"] == RECAP["covered"]


async def test_an_unreachable_model_leaves_a_failed_recap(
    app: Quart, client: TestClientProtocol, llm: ScriptedLLM, model: Model
) -> None:
    await register(client)
    llm.fail_with_status = 500
    lesson_id, _ = await held_lesson(app, client, LINES)
    assert (await lesson_of(client, lesson_id))["recap"]["status"] == "failed"


async def test_only_the_learner_writes_their_recap_again_and_only_once_the_lesson_ended(
    app: Quart, client: TestClientProtocol, new_client: Any
) -> None:
    await register(client)
    lesson_id, companion_id = await held_lesson(app, client, LINES)
    other = new_client()
    await register(other, email="bob@school.test", name="Bob")
    response = await other.post(f"/api/lessons/{lesson_id}/recap")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "lesson_not_found"
    assert (await other.post("/api/lessons/999999/recap")).status_code == 404

    response = await client.post(f"/api/companions/{companion_id}/lessons")
    open_id = (await response.get_json())["id"]
    response = await client.post(f"/api/lessons/{open_id}/recap")
    assert response.status_code == 409
    assert (await response.get_json())["error"]["code"] == "lesson_not_ended"
    assert (await lesson_of(client, open_id))["recap"] is None


async def test_a_learner_sees_and_deletes_only_their_own_facts(
    app: Quart, client: TestClientProtocol, new_client: Any
) -> None:
    await register(client)
    await held_lesson(app, client, LINES)
    facts = (await (await client.get("/api/me/facts")).get_json())["facts"]
    first, second = facts

    other = new_client()
    await register(other, email="bob@school.test", name="Bob")
    assert (await (await other.get("/api/me/facts")).get_json())["facts"] == []
    response = await other.delete(f"/api/me/facts/{first['id']}")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "fact_not_found"
    assert (await client.get("/api/me/facts?companion_id=abc")).status_code == 400

    assert (await client.delete(f"/api/me/facts/{first['id']}")).status_code == 204
    assert (await client.delete(f"/api/me/facts/{first['id']}")).status_code == 404
    left = (await (await client.get("/api/me/facts")).get_json())["facts"]
    assert [f["id"] for f in left] == [second["id"]]


async def test_the_next_lesson_with_the_companion_starts_from_the_last_recaps_and_the_facts(
    app: Quart, client: TestClientProtocol, settings: Settings
) -> None:
    await register(client)
    first_id, companion_id = await held_lesson(app, client, LINES)
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    next_id = (await response.get_json())["id"]
    state = get_state(app)
    me = (await (await client.get("/api/me")).get_json())["id"]
    live = await lessons.get_live_lesson(state.db, next_id, me)
    memory = await recaps.memory_for(state.db, settings, me, companion_id, next_id)
    brief = brief_lesson(settings, live, memory)
    assert brief.greeting == (
        f"Welcome back! Last time we covered {RECAP['covered']}. Today we'll keep going with Neural networks."
    )
    assert str(RECAP["covered"]) in brief.system_prompt
    assert "Telling the bias apart from the weights" in brief.system_prompt
    for fact in FACTS:
        assert f"- {fact}" in brief.system_prompt

    # A first lesson (another companion) starts as before.
    other_companion = (await create_companion(client, topic="Volcanoes"))["id"]
    response = await client.post(f"/api/companions/{other_companion}/lessons")
    fresh = await lessons.get_live_lesson(state.db, (await response.get_json())["id"], me)
    memory = await recaps.memory_for(state.db, settings, me, other_companion, fresh.lesson_id)
    assert memory == recaps.Memory()
    assert brief_lesson(settings, fresh, memory).greeting == settings.voice.first_message.format(topic="Volcanoes")
    assert first_id != next_id


def test_memory_is_capped_by_configuration() -> None:
    settings = Settings()
    caps = settings.recaps
    long = " ".join(["word"] * 100)
    memory = recaps.Memory(recaps=((long, long),), facts=("a fact",))
    prompt = memory.prompt(caps)
    assert prompt.count("word") == 2 * caps.recap_words
    greeting = memory.greeting(caps, {"topic": "T", "subject": "s", "style": "casual", "name": "N"})
    assert greeting is not None and greeting.count("word") == caps.greeting_words


async def test_a_lesson_ended_by_the_sweep_after_a_crash_gets_its_recap(settings: Settings, model: Model) -> None:
    """A server process died mid-lesson: the next one to start ends the lesson and writes its recap."""
    quiet = settings.model_copy(update={"server": settings.server.model_copy(update={"heartbeat_secs": 3600})})
    first = create_app(quiet)
    async with first.test_app():
        client = first.test_client()
        await register(client)
        companion_id = (await create_companion(client))["id"]
        response = await client.post(f"/api/companions/{companion_id}/lessons")
        lesson_id = (await response.get_json())["id"]
        for role, text in LINES:
            await lessons.append_transcript(get_state(first).db, lesson_id, role, text)  # type: ignore[arg-type]
        keeper = get_state(first).extras[instances.EXTRAS_KEY]
        await instances.heartbeat(get_state(first).db, keeper.instance, now=datetime.now(UTC) - timedelta(days=1))

        second = create_app(quiet)
        async with second.test_app():
            await worker(second).idle()
            ended = await lesson_of(client, lesson_id)
            assert ended["end_reason"] == "server-restart"
            assert ended["recap"]["status"] == "ready"
            assert ended["recap"]["covered"] == RECAP["covered"]
            [request] = model.recap_requests
            assert "Learner: What does a neuron do with its inputs?" in request[-1]["content"]


async def test_a_hosted_lessons_recap_comes_from_its_end_of_call_report_and_the_next_call_greets_with_it(
    tmp_path: Path, database_url: str, llm: ScriptedLLM, model: Model
) -> None:
    settings = hosted_settings(
        tmp_path,
        database_url,
        RECAPS__ENABLED="true",
        VOICE__LLM__PROVIDER="openai",
        VOICE__LLM__BASE_URL=llm.base_url,
        VOICE__LLM__MODEL=MODEL_ID,
    )
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        await register(client)
        companion_id = (await create_companion(client, voice="female.casual"))["id"]  # a vapi.voices entry
        response = await client.post(f"/api/companions/{companion_id}/lessons")
        lesson_id = (await response.get_json())["id"]
        vapi = app.test_client()  # Vapi's side: no learner's cookies
        status, body = await send(vapi, payload("end-of-call-report", lesson_id))
        assert (status, body.get("outcome")) == (200, "stored"), body
        await worker(app).idle()

        # Written from the report's transcript, which is the lesson's record.
        [request] = model.recap_requests
        for role, text in REPORT_TRANSCRIPT:
            assert f"{'Learner' if role == 'user' else 'Tutor'}: {text}" in request[-1]["content"]
        recap = (await lesson_of(client, lesson_id))["recap"]
        assert recap["status"] == "ready" and recap["covered"] == RECAP["covered"]
        # A replayed report writes nothing again.
        assert (await send(vapi, payload("end-of-call-report", lesson_id)))[1]["outcome"] == "unchanged"
        await worker(app).idle()
        assert len(model.recap_requests) == 1

        # The next call with the companion: Vapi's assistant greets with what the last one covered, and its
        # prompt carries the recap and the facts.
        response = await client.post(f"/api/companions/{companion_id}/lessons")
        next_id = (await response.get_json())["id"]
        setup = await (await client.get(f"/api/lessons/{next_id}/call")).get_json()
        assistant = setup["assistant"]
        assert assistant["firstMessage"].startswith(f"Welcome back! Last time we covered {RECAP['covered']}.")
        prompt = assistant["model"]["messages"][0]["content"]
        assert str(RECAP["covered"]) in prompt and all(f"- {fact}" in prompt for fact in FACTS)
        # The same assistant when Vapi asks for it by the call's metadata.
        status, answer = await send(vapi, payload("assistant-request", next_id))
        assert status == 200 and answer["assistant"]["firstMessage"] == assistant["firstMessage"]


async def test_the_embedded_model_writes_the_recap_from_the_transcript_or_it_is_stored_as_failed(
    tmp_path: Path,
) -> None:
    """With no endpoint, the bundled model writes recaps (the default on a fresh install). Whether a 135M model's
    recap passes the checks is its own verdict: either it does, and then says what the transcript said, or the
    recap is stored as failed and nothing is invented. Either way the model was asked, even for a lesson far longer
    than its context holds (the transcript keeps its latest lines)."""
    settings = make_settings(tmp_path, VOICE__LLM__PROVIDER="embedded", SAFETY__CLASSIFIER="off")
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        await register(client)
        long_lesson = LINES * 30  # about 10,000 characters: three times what the model's context holds
        lesson_id, companion_id = await held_lesson(app, client, long_lesson, within=300)
        recap = (await lesson_of(client, lesson_id))["recap"]
        assert recap["model"] == "SmolLM2-135M-Instruct"
        assert recap["status"] in ("ready", "failed"), recap
        facts = (await (await client.get(f"/api/me/facts?companion_id={companion_id}")).get_json())["facts"]
        if recap["status"] == "ready":
            said = {w.lower() for _, text in LINES for w in recaps._WORD.findall(text)} | {"neural", "networks"}
            assert any(w.lower() in said for w in recaps._WORD.findall(recap["covered"])), recap
            assert 2 <= len(recap["questions"]) <= 3 and all(q.endswith("?") for q in recap["questions"])
            assert len(facts) <= settings.recaps.memory_facts
            # The learner is told who wrote it.
            assert recap["notice"] == recaps.DEMO_RECAP_NOTICE
        else:
            assert (recap["covered"], recap["questions"], facts) == ("", [], [])


def test_numbered_questions_are_questions_and_what_repeats_itself_is_dropped() -> None:
    answer = json.dumps(
        {
            "covered": "how a neuron adds up weighted inputs",
            "hard": "How a neuron adds up weighted inputs",
            "questions": ["Question 1: What does a weight do?", "2. What does the bias add?"],
            "facts": ["facts", "Likes football examples", "how a neuron adds up weighted inputs"],
        }
    )
    recap = recaps.parse_recap(Settings().recaps, answer, LINES)
    assert recap is not None
    assert recap.questions == ["What does a weight do?", "What does the bias add?"]
    assert recap.hard == ""
    assert recap.facts == ["Likes football examples"]


def test_a_long_transcript_is_cut_to_what_a_small_models_context_holds_keeping_its_latest_lines() -> None:
    settings = Settings().recaps
    lines = [(role, f"{text} ({i})") for i, (role, text) in enumerate(LINES * 30)]
    whole = recaps.recap_request(settings, "Neural networks", lines, [])
    cut = recaps.recap_request(settings, "Neural networks", lines, [], prompt_chars=4000)
    assert sum(len(m["content"]) for m in cut) <= 4000 < sum(len(m["content"]) for m in whole)
    last_role, last_text = lines[-1]
    assert cut[-1]["content"].endswith(f"Tutor: {last_text}") and last_role == "assistant"
    assert f"({len(lines) - 2})" in cut[-1]["content"] and "(0)" not in cut[-1]["content"]
