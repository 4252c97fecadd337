"""Teaching styles and review-question progress through the real routes on both databases: a companion keeps how
it teaches, each style's instruction reaches the lesson's prompt, a quiz lists the review questions of past recaps
not yet answered right, and after a quiz lesson the scripted model's judgement is what "my journey" shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol

from harness.scripted_llm import ScriptedLLM
from server import lessons, teaching
from server.lesson_brief import brief_lesson
from server.lesson_recorder import stored_lessons
from server.lessons import Role
from server.settings import Settings
from server.state import get_state
from server.store import recaps as recap_store
from tests.conftest import create_companion, register, scripted_model_settings

TEACHING = Settings().voice.teaching
PAST = [
    ["What does a weight do?", "What does the bias add?", "What does the activation decide?"],
    ["What is a layer?", "What is training?"],
]
QUIZ: list[tuple[Role, str]] = [
    ("assistant", "Hello, let's start the session. Today we'll be talking about Neural networks."),
    ("assistant", "First question: what does a weight do?"),
    ("user", "It says how much an input counts."),
    ("assistant", "Right! Next: what does the bias add?"),
    ("user", "Another input?"),
    ("assistant", "Not quite: it is added on its own. What is a layer?"),
    ("user", "A group of neurons side by side."),
]


class Model:
    """The scripted model: judge requests get `verdict` (a dict is sent as JSON), anything else a short reply."""

    def __init__(self) -> None:
        self.verdict: Any = {
            "results": [
                {"question": 1, "asked": True, "correct": True},
                {"question": 2, "asked": True, "correct": False},
                {"question": 4, "asked": True, "correct": True},
                {"question": 5, "asked": False, "correct": False},
            ]
        }
        self.judge_requests: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        if messages and messages[0].get("content") == teaching.JUDGE_PROMPT:
            self.judge_requests.append(messages)
            return self.verdict if isinstance(self.verdict, str) else json.dumps(self.verdict)
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
    # The past recaps are written here; no lesson of these tests gets a new one.
    return scripted_model_settings(tmp_path, database_url, llm, RECAPS__ENABLED="false")


def judge(app: Quart) -> teaching.ReviewJudge:
    found: teaching.ReviewJudge = get_state(app).extras[teaching.EXTRAS_KEY]
    return found


async def new_lesson(client: TestClientProtocol, companion_id: int) -> int:
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    lesson_id: int = (await response.get_json())["id"]
    return lesson_id


async def held_lesson(app: Quart, lesson_id: int, lines: list[tuple[Role, str]]) -> None:
    """Record the lesson's transcript and end it as a live lesson ends (its recorder); wait for its judgement."""
    state = get_state(app)
    recorder = stored_lessons(state.db, None, teaching=judge(app))(lesson_id)
    for role, text in lines:
        await recorder.on_utterance(role, text, ())
    await recorder.on_ended("customer-ended-call")
    await judge(app).idle()


async def past_recaps(app: Quart, client: TestClientProtocol, companion_id: int) -> None:
    """Two earlier lessons with this companion, each with a written recap and its review questions."""
    for questions in PAST:
        lesson_id = await new_lesson(client, companion_id)
        await lessons.end_lesson(get_state(app).db, lesson_id, "customer-ended-call")
        async with get_state(app).db.write() as session:
            await recap_store.put(session, lesson_id, "ready", covered="neurons", questions=questions)


async def system_prompt(app: Quart, client: TestClientProtocol, lesson_id: int) -> str:
    state = get_state(app)
    me = (await (await client.get("/api/me")).get_json())["id"]
    live = await lessons.get_live_lesson(state.db, lesson_id, me)
    return brief_lesson(state.settings, live).system_prompt


async def test_a_companion_keeps_how_it_teaches(app: Quart, client: TestClientProtocol) -> None:
    await register(client)
    plain = await create_companion(client)
    assert plain["teaching"] == "explain"
    socratic = await create_companion(client, teaching="socratic")
    assert socratic["teaching"] == "socratic"

    response = await client.patch(f"/api/companions/{socratic['id']}", json={"teaching": "quiz"})
    assert response.status_code == 200
    assert (await response.get_json())["teaching"] == "quiz"
    assert (await (await client.get(f"/api/companions/{socratic['id']}")).get_json())["teaching"] == "quiz"
    listed = (await (await client.get("/api/companions")).get_json())["items"]
    assert {c["id"]: c["teaching"] for c in listed} == {plain["id"]: "explain", socratic["id"]: "quiz"}

    response = await client.patch(f"/api/companions/{socratic['id']}", json={"teaching": "lecture"})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "validation_error"
    assert (await (await client.get(f"/api/companions/{socratic['id']}")).get_json())["teaching"] == "quiz"


@pytest.mark.parametrize("style", ["explain", "socratic"])
async def test_each_style_adds_its_instruction_to_the_lessons_prompt(
    app: Quart, client: TestClientProtocol, style: str
) -> None:
    await register(client)
    companion = await create_companion(client, teaching=style)
    prompt = await system_prompt(app, client, await new_lesson(client, companion["id"]))
    assert getattr(TEACHING, style) in prompt
    others = {"explain": TEACHING.socratic, "socratic": TEACHING.explain}
    assert others[style] not in prompt


async def test_a_quiz_asks_the_open_review_questions_and_its_judged_answers_are_my_progress(
    app: Quart, client: TestClientProtocol, model: Model
) -> None:
    await register(client)
    companion = await create_companion(client, teaching="quiz")
    # Before any recap, the quiz asks its own questions on the topic.
    first = await new_lesson(client, companion["id"])
    assert TEACHING.quiz_without_questions in await system_prompt(app, client, first)
    await held_lesson(app, first, [("user", "hello")])
    assert model.judge_requests == []  # nothing to judge
    await past_recaps(app, client, companion["id"])

    progress = (await (await client.get("/api/me/progress")).get_json())["companions"]
    assert [(p["companion"]["id"], p["total"], p["answered_right"]) for p in progress] == [(companion["id"], 5, 0)]

    quiz = await new_lesson(client, companion["id"])
    prompt = await system_prompt(app, client, quiz)
    for question in PAST[0] + PAST[1]:
        assert f"- {question}" in prompt
    await held_lesson(app, quiz, QUIZ)

    # The judge was asked once, with the numbered questions and the lesson's own transcript.
    [request] = model.judge_requests
    sent = request[-1]["content"]
    assert "1. What does a weight do?" in sent and "5. What is training?" in sent
    for role, text in QUIZ:
        assert f"{'Student' if role == 'user' else 'Tutor'}: {text}" in sent

    [mine] = (await (await client.get("/api/me/progress")).get_json())["companions"]
    assert (mine["total"], mine["answered_right"]) == (5, 2)
    by_question = {q["question"]: q for q in mine["questions"]}
    assert [q for q in by_question if by_question[q]["answered_right"]] == [
        "What does a weight do?",
        "What is a layer?",
    ]
    assert by_question["What does the bias add?"]["asked_count"] == 1
    assert by_question["What does the bias add?"]["answered_right"] is False
    assert by_question["What is training?"]["asked_count"] == 0

    # The next quiz asks only what is still open.
    prompt = await system_prompt(app, client, await new_lesson(client, companion["id"]))
    assert "- What does the bias add?" in prompt and "- What is training?" in prompt
    assert "What does a weight do?" not in prompt and "What is a layer?" not in prompt


@pytest.mark.parametrize("verdict", ["Well done, they got most right!", {"results": "all"}], ids=["prose", "shape"])
async def test_a_judgement_that_is_not_the_json_asked_for_stores_nothing(
    app: Quart, client: TestClientProtocol, model: Model, verdict: Any
) -> None:
    await register(client)
    companion = await create_companion(client, teaching="quiz")
    await past_recaps(app, client, companion["id"])
    model.verdict = verdict
    await held_lesson(app, await new_lesson(client, companion["id"]), QUIZ)
    assert len(model.judge_requests) == 1
    [mine] = (await (await client.get("/api/me/progress")).get_json())["companions"]
    assert mine["answered_right"] == 0
    assert all(q["asked_count"] == 0 for q in mine["questions"])


async def test_only_quiz_lessons_are_judged_and_each_learner_sees_only_their_own_progress(
    app: Quart, client: TestClientProtocol, new_client: Any, model: Model
) -> None:
    await register(client)
    companion = await create_companion(client, teaching="explain")
    await past_recaps(app, client, companion["id"])
    await held_lesson(app, await new_lesson(client, companion["id"]), QUIZ)
    assert model.judge_requests == []

    other = new_client()
    await register(other, email="bob@example.com", name="Bob")
    assert (await (await other.get("/api/me/progress")).get_json()) == {"companions": []}
    assert (await client.get("/api/me/progress")).status_code == 200
    assert (await app.test_client().get("/api/me/progress")).status_code == 401
