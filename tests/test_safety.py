"""Safety screening: the local word and pattern check (both sides of it), the classifier, and stored flags."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from quart import Quart
from sqlalchemy import select, update

from harness.loopback import LoopbackServer
from harness.scripted_llm import MODEL_ID, ScriptedLLM, unused_base_url
from server import safety
from server.pipeline.language_model import LanguageModel
from server.safety import CLASSIFIER_PROMPT, LocalCheck, Safety, Verdict
from server.settings import Settings, VoiceSettings
from server.state import get_state
from server.store.models import Alert, ClassMember, Lesson, SafetyFlag, SchoolClass, User
from tests.conftest import make_settings, register

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

# -- helpers the API and lesson tests share -------------------------------------------------------------------


@dataclass
class School:
    """A class taught by `teacher` with `learner` in it, another teacher's class, and an administrator."""

    learner_id: int
    teacher: TestClientProtocol
    teacher_id: int
    other_teacher: TestClientProtocol
    admin: TestClientProtocol
    admin_id: int
    class_id: int
    other_class_id: int


async def set_role(app: Quart, user_id: int, role: str) -> None:
    async with get_state(app).db.write() as session:
        await session.execute(update(User).where(User.id == user_id).values(role=role))


async def add_class(app: Quart, teacher_id: int, name: str, learners: list[int]) -> int:
    async with get_state(app).db.write() as session:
        school_class = SchoolClass(name=name, teacher_id=teacher_id, join_code=f"C{teacher_id}{name[:4].upper()}")
        session.add(school_class)
        await session.flush()
        session.add_all([ClassMember(class_id=school_class.id, learner_id=learner) for learner in learners])
        return school_class.id


async def signed_up(app: Quart, email: str, name: str, role: str = "learner") -> tuple[TestClientProtocol, int]:
    client = app.test_client()
    user_id: int = (await register(client, email=email, name=name))["id"]
    if role != "learner":
        await set_role(app, user_id, role)
    return client, user_id


async def make_school(app: Quart, learner_id: int) -> School:
    """Staff signed up through the real routes; their roles and classes written directly (the classes API is
    another module's)."""
    teacher, teacher_id = await signed_up(app, "tess@school.test", "Tess Teacher", "teacher")
    other, other_id = await signed_up(app, "otto@school.test", "Otto Other", "teacher")
    admin, admin_id = await signed_up(app, "ada@school.test", "Ada Admin", "admin")
    class_id = await add_class(app, teacher_id, "Year 5", [learner_id])
    other_class_id = await add_class(app, other_id, "Year 6", [])
    return School(learner_id, teacher, teacher_id, other, admin, admin_id, class_id, other_class_id)


async def add_lesson(app: Quart, learner_id: int, companion_name: str = "Neura") -> int:
    async with get_state(app).db.write() as session:
        lesson = Lesson(companion_id=None, companion_name=companion_name, learner_id=learner_id)
        session.add(lesson)
        await session.flush()
        return lesson.id


def app_safety(app: Quart) -> Safety:
    found: Safety = get_state(app).extras[safety.EXTRAS_KEY]
    return found


async def stored_flags(app: Quart) -> list[SafetyFlag]:
    async with get_state(app).db.read() as session:
        return list((await session.execute(select(SafetyFlag).order_by(SafetyFlag.id))).scalars())


async def alert_recipients(app: Quart, flag_id: int) -> set[int]:
    async with get_state(app).db.read() as session:
        rows = await session.execute(select(Alert.recipient_id).where(Alert.flag_id == flag_id))
        return set(rows.scalars())


# -- the local check -------------------------------------------------------------------------------------------

CHECK = LocalCheck(Settings().safety.categories)

FLAGGED = [
    ("I want to kill myself.", "self_harm", "high"),
    ("Sometimes I think about hurting myself", "self_harm", "high"),
    ("I don't want to live anymore", "self_harm", "high"),
    ("I\u2019m going to kill myself tonight", "self_harm", "high"),  # a typographic apostrophe
    ("I read about self-harm", "self_harm", "high"),
    ("You are stupid and nobody likes you.", "abuse", "high"),
    ("My stepdad hits me when he is angry", "abuse", "high"),
    ("This is our little secret, okay?", "abuse", "high"),
    ("Can you send me a photo of yourself?", "sexual", "high"),
    ("My phone number is five five five.", "personal_data", "medium"),
    ("You can call me on 555-123-4567", "personal_data", "medium"),
    ("Ring me at 07700 900123 after school", "personal_data", "medium"),
    ("my mum's is +44 7700 900123", "personal_data", "medium"),
    ("I live at 42 Baker Street, near the park.", "personal_data", "medium"),
    ("Write to ann.smith@school.org", "personal_data", "medium"),
    ("it's ann at school dot org", "personal_data", "medium"),
    ("So, where do you live?", "personal_data", "medium"),
    # Two categories: the worse one counts.
    ("My number is 555 123 4567 and I want to die", "self_harm", "high"),
]

# Ordinary lesson talk that shares words with the lists.
NOT_FLAGGED = [
    "The white blood cell kills bacteria.",
    "Romeo and Juliet both die at the end of the play.",
    "Cleopatra died in 30 BC, and historians still argue about how.",
    "You can see the moon with the naked eye.",
    "The Second World War lasted from 1939 to 1945.",
    "What is 12 times 12? It is 144.",
    "Plants use sexual reproduction to make seeds.",
    "The school is 10 miles down the road.",
    "Take 2 steps this way and 3 steps back.",
    "I hate homework, but I like volcanoes.",
    "That lava would hurt if you touched it.",
    "My favourite number is 7.",
    "Is this the right way to live a healthy life?",
]


@pytest.mark.parametrize(("text", "category", "severity"), FLAGGED)
def test_the_local_check_flags_harm_and_personal_data(text: str, category: str, severity: str) -> None:
    assert CHECK(text) == Verdict(category, severity)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", NOT_FLAGGED)
def test_the_local_check_lets_ordinary_lesson_talk_through(text: str) -> None:
    assert CHECK(text) is None


def test_the_local_check_takes_microseconds() -> None:
    texts = [t for t, _, _ in FLAGGED] + NOT_FLAGGED
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            CHECK(text)
    per_utterance = (time.perf_counter() - started) / (rounds * len(texts))
    print(f"\nlocal check: {per_utterance * 1e6:.1f} µs per utterance ({len(texts)} utterances x {rounds})")
    # A 20 ms audio packet is 20,000 µs; a busy CI machine still checks well under 1% of one.
    assert per_utterance < 200e-6


def test_a_schools_own_lists_replace_or_add(tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path,
        SAFETY__CATEGORIES='{"bullying": {"severity": "low", "words": ["loser"]}, "abuse": {"words": ["meanie"]}}',
    )
    check = LocalCheck(settings.safety.categories)
    assert check("what a loser") == Verdict("bullying", "low")
    assert check("you meanie") == Verdict("abuse", "high")
    # A category's table replaces the keys it names: abuse's words are now only the school's.
    assert check("you are stupid") is None
    assert check("I want to die") == Verdict("self_harm", "high")


def test_a_bad_pattern_is_refused_naming_its_key(tmp_path: Any) -> None:
    from server.settings import ConfigError

    with pytest.raises(ConfigError, match=r"safety\.categories\.abuse\.patterns.*not a regular expression"):
        make_settings(tmp_path, SAFETY__CATEGORIES='{"abuse": {"patterns": ["(unclosed"]}}')


def test_what_the_lesson_does_about_a_finding() -> None:
    screen = Safety(Settings(), db=None)  # type: ignore[arg-type]
    assert screen.learner_turn("I want to kill myself") == Verdict("self_harm", "high", "support")
    assert screen.learner_turn("my phone number is 555 123 4567") == Verdict("personal_data", "medium", "none")
    assert screen.learner_turn("how do volcanoes form?") is None
    assert screen.tutor_reply("You are stupid.") == Verdict("abuse", "high", "replaced")
    assert screen.tutor_reply("Where do you live?") == Verdict("personal_data", "medium", "replaced")
    assert screen.tutor_reply("Lava is molten rock.") is None


# -- the classifier --------------------------------------------------------------------------------------------


def classifying_llm(verdicts: dict[str, str]) -> ScriptedLLM:
    """A scripted model that answers classification requests by a word in the utterance, tutoring ones plainly."""

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages and messages[0].get("content") == CLASSIFIER_PROMPT:
            said = str(messages[-1].get("content", "")).lower()
            return next((answer for word, answer in verdicts.items() if word in said), '{"category": "none"}')
        return "Sure."

    return ScriptedLLM(reply)


async def started_model(base_url: str) -> LanguageModel:
    voice = VoiceSettings.model_validate(
        {"llm": {"provider": "openai", "base_url": base_url, "model": MODEL_ID, "timeout_secs": 5, "max_retries": 0}}
    )
    model = LanguageModel(voice, cpus=1)
    await model.start()
    return model


async def test_the_model_classifies_what_the_lists_let_through() -> None:
    with classifying_llm(
        {
            "bridge": '{"category": "self_harm", "severity": "high"}',
            "secret": 'Sure! {"category": "abuse", "severity": "medium"} is my answer.',
            "weird": "I am not sure what you mean.",
        }
    ) as llm:
        model = await started_model(llm.base_url)
        screen = Safety(Settings(), db=None, language_model=lambda: model)  # type: ignore[arg-type]
        try:
            said = "I am going to jump off the bridge tonight"
            assert CHECK(said) is None  # the lists miss it; the model does not
            assert await screen.classify("user", said) == (Verdict("self_harm", "high"), "model")
            assert await screen.classify("assistant", "keep this a secret from mum") == (
                Verdict("abuse", "medium"),
                "model",
            )
            assert await screen.classify("user", "Volcanoes erupt when pressure builds up.") is None
            assert await screen.classify("user", "a weird question") is None  # not JSON: no verdict
        finally:
            await model.close()
        request = llm.requests[0]
        assert request["messages"][0]["content"] == CLASSIFIER_PROMPT
        assert request["messages"][1]["content"] == f"The child said: {said}"
        assert request["temperature"] == 0 and request["model"] == MODEL_ID


async def test_the_model_classifier_is_off_when_no_model_answers(caplog: pytest.LogCaptureFixture) -> None:
    model = await started_model(unused_base_url())
    screen = Safety(Settings(), db=None, language_model=lambda: model)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.INFO, logger="server.safety"):
            assert await screen.classify("user", "I am going to jump off the bridge") is None
            assert await screen.classify("user", "and again") is None
    finally:
        await model.close()
    said = [r.getMessage() for r in caplog.records if "classifier is off" in r.getMessage()]
    assert said == [
        "safety: the model classifier is off for now (no language model answers); the local lists still screen"
    ]


def test_the_models_answer_is_read_leniently() -> None:
    screen = Safety(Settings(), db=None)  # type: ignore[arg-type]
    parse = screen.parse_classification
    assert parse('{"category": "Self-Harm", "severity": "HIGH"}') == Verdict("self_harm", "high")
    assert parse('```json\n{"category": "personal_data"}\n```') == Verdict("personal_data", "medium")
    assert parse('{"category": "sexual"}') == Verdict("sexual", "high")  # the category's configured severity
    assert parse('{"category": "none"}') is None
    assert parse('{"category": "<script>", "severity": "low"}') == Verdict("other", "low")
    assert parse("no json here") is None
    assert parse("{not json}") is None


class ModerationServer(LoopbackServer):
    """An OpenAI-compatible /v1/moderations endpoint on loopback that flags utterances containing a word."""

    thread_name = "moderation"

    def __init__(self, flags: dict[str, dict[str, bool]]) -> None:
        super().__init__()
        self.flags = flags
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/moderations", self._moderate)

    async def _moderate(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.requests.append({"body": body, "authorization": request.headers.get("Authorization")})
        text = str(body.get("input", "")).lower()
        categories = next((c for word, c in self.flags.items() if word in text), {})
        result = {
            "flagged": any(categories.values()),
            "categories": {"harassment": False, "self-harm": False, **categories},
            "category_scores": {name: (0.9 if on else 0.01) for name, on in categories.items()},
        }
        return web.json_response({"id": "modr-1", "model": body.get("model"), "results": [result]})


async def test_a_moderation_endpoint_classifies_instead_of_the_model(tmp_path: Any) -> None:
    flags = {
        "bridge": {"self-harm": True, "self-harm/intent": True, "violence": True},
        "loser": {"harassment": True},
        "brand-new": {"something-new": True},
    }
    with ModerationServer(flags) as moderation:
        settings = make_settings(
            tmp_path, SAFETY__MODERATION_URL=moderation.base_url, SAFETY__MODERATION_API_KEY="sk-school"
        )
        screen = Safety(settings, db=None)  # type: ignore[arg-type]
        try:
            assert await screen.classify("user", "I will jump off the bridge") == (
                Verdict("self_harm", "high"),
                "moderation",
            )
            assert await screen.classify("user", "you loser") == (Verdict("abuse", "medium"), "moderation")
            assert await screen.classify("user", "a brand-new category") == (
                Verdict("other", "medium"),
                "moderation",
            )
            assert await screen.classify("user", "Lava is hot.") is None
        finally:
            await screen.close()
        first = moderation.requests[0]
        assert first["body"] == {"input": "I will jump off the bridge", "model": "omni-moderation-latest"}
        assert first["authorization"] == "Bearer sk-school"


async def test_a_moderation_endpoint_that_is_down_costs_only_a_log_line(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, SAFETY__MODERATION_URL=unused_base_url(), SAFETY__CLASSIFIER_TIMEOUT_SECS="2")
    screen = Safety(settings, db=None)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING, logger="server.safety"):
            assert await screen.classify("user", "anything") is None
    finally:
        await screen.close()
    assert any("moderation endpoint failed (APIConnectionError" in r.getMessage() for r in caplog.records)


# -- flags and alerts in the database ----------------------------------------------------------------------------


async def test_a_high_flag_alerts_the_learners_teachers_and_the_administrators(app: Quart, client: Any) -> None:
    learner_id = (await register(client, email="ann@school.test", name="Ann"))["id"]
    school = await make_school(app, learner_id)
    # A second class of the learner, taught by another teacher, who is alerted too.
    _, second_id = await signed_up(app, "sam@school.test", "Sam Second", "teacher")
    await add_class(app, second_id, "Choir", [learner_id])
    # A disabled administrator is not.
    _, gone_id = await signed_up(app, "gone@school.test", "Gone Admin", "admin")
    async with get_state(app).db.write() as session:
        await session.execute(update(User).where(User.id == gone_id).values(disabled_at=User.created_at))
    lesson_id = await add_lesson(app, learner_id)
    screen = app_safety(app)

    high = await screen.record(lesson_id, "user", "I want to die", Verdict("self_harm", "high", "support"), "local")
    medium = await screen.record(
        lesson_id, "user", "my address is 4 Elm Road", Verdict("personal_data", "medium"), "local"
    )

    flags = await stored_flags(app)
    assert [(f.id, f.learner_id, f.role, f.text, f.category, f.severity, f.source, f.action) for f in flags] == [
        (high, learner_id, "user", "I want to die", "self_harm", "high", "local", "support"),
        (medium, learner_id, "user", "my address is 4 Elm Road", "personal_data", "medium", "local", "none"),
    ]
    assert high is not None and medium is not None
    assert await alert_recipients(app, high) == {school.teacher_id, second_id, school.admin_id}
    assert await alert_recipients(app, medium) == set()


async def test_the_classifiers_flag_is_stored_off_the_audio_path(tmp_path: Any) -> None:
    with classifying_llm({"bridge": '{"category": "self_harm", "severity": "high"}'}) as llm:
        settings = make_settings(tmp_path, VOICE__LLM__BASE_URL=llm.base_url, VOICE__LLM__MODEL=MODEL_ID)
        from server.app import create_app

        app = create_app(settings)
        async with app.test_app():
            client = app.test_client()
            learner_id = (await register(client))["id"]
            school = await make_school(app, learner_id)
            lesson_id = await add_lesson(app, learner_id)
            state = get_state(app)
            assert state.voice is not None
            await state.voice.language_model.start()
            screening = app_safety(app).screening(lesson_id)
            assert screening is not None

            started = time.perf_counter()
            screening.report("user", "I will jump off the bridge tonight", None)
            reported_in = time.perf_counter() - started
            # The learner's turn waits for the tutor's reply to it: the classifier never queues ahead of it.
            await app_safety(app).idle(within=0.5)
            assert llm.requests == []
            screening.report("assistant", "Lava is molten rock.", None)
            await app_safety(app).idle()

            flags = await stored_flags(app)
            assert [(f.role, f.text, f.category, f.severity, f.source, f.action) for f in flags] == [
                ("user", "I will jump off the bridge tonight", "self_harm", "high", "model", "none")
            ]
            assert await alert_recipients(app, flags[0].id) == {school.teacher_id, school.admin_id}
    # The pipeline's call only starts the work; the model is asked in the background.
    assert reported_in < 0.01
    assert len(llm.requests) == 2
