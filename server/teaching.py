"""How a companion teaches (explain, socratic, quiz), and the learner's progress on the review questions of past recaps.

The teaching style adds its configured instruction to the lesson's system prompt (server/lesson_brief.py); a
quiz lists the review questions the learner has not yet answered right (open_questions). After a quiz lesson,
off the lesson's path, the language model reads the transcript and says which of them were asked and which
answered right (JSON); that is stored per learner and companion, and "my journey" shows it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts import CurrentUser
from server.background import BackgroundTasks
from server.settings import Settings
from server.store import teaching as store
from server.store.db import Database
from server.timeutil import as_utc

if TYPE_CHECKING:
    from server.pipeline.language_model import LanguageModel

log = logging.getLogger(__name__)

Teaching = Literal["explain", "socratic", "quiz"]
TEACHING_STYLES: tuple[str, ...] = ("explain", "socratic", "quiz")
EXTRAS_KEY = "teaching"

# The judge's instructions: numbered questions in, one line of JSON out, so a small model can do it.
JUDGE_PROMPT = (
    "You read the transcript of a spoken quiz between a tutor and a student, and a numbered list of review "
    "questions. For each question say whether the tutor asked it (in any wording) and whether the student's own "
    "answer was right. The tutor giving the answer does not count as the student answering right. Answer with "
    'one line of JSON and nothing else: {"results": [{"question": 1, "asked": true, "correct": false}, ...]}'
)
JUDGE_MAX_TOKENS = 200
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


async def open_questions(session: AsyncSession, learner_id: int, companion_id: int, limit: int = 20) -> list[str]:
    """The review questions a quiz asks next: those not yet answered right, the least asked first, then the oldest
    (the prompt lists the first voice.teaching.quiz_questions of them)."""
    found = [q for q in await store.questions(session, learner_id, companion_id) if q.answered_correctly_at is None]
    found.sort(key=lambda q: q.asked_count)  # stable: oldest lesson first among the equally asked
    return [q.question for q in found[:limit]]


# -- what "my journey" shows --------------------------------------------------------------------------------------


class QuestionOut(BaseModel):
    question: str
    asked_count: int
    answered_right: bool
    answered_right_at: datetime | None
    last_asked_at: datetime | None


class CompanionRefOut(BaseModel):
    id: int
    name: str
    subject: str
    topic: str
    teaching: str


class CompanionProgressOut(BaseModel):
    companion: CompanionRefOut
    total: int
    answered_right: int
    questions: list[QuestionOut]


class ProgressOut(BaseModel):
    companions: list[CompanionProgressOut]


async def progress(db: Database, user: CurrentUser) -> ProgressOut:
    """The learner's review questions per companion (from their recaps) and which they have answered right."""
    async with db.read() as session:
        found = await store.questions(session, user.id)
        refs = await store.companions(session, sorted({q.companion_id for q in found}))
    by_companion: dict[int, list[store.QuestionRecord]] = {}
    for q in found:
        by_companion.setdefault(q.companion_id, []).append(q)
    out = []
    for companion_id, records in by_companion.items():
        ref = refs.get(companion_id)
        if ref is None:
            continue
        questions = [
            QuestionOut(
                question=q.question,
                asked_count=q.asked_count,
                answered_right=q.answered_correctly_at is not None,
                answered_right_at=as_utc(q.answered_correctly_at) if q.answered_correctly_at else None,
                last_asked_at=as_utc(q.last_asked_at) if q.last_asked_at else None,
            )
            for q in records
        ]
        out.append(
            CompanionProgressOut(
                companion=CompanionRefOut(
                    id=ref.id, name=ref.name, subject=ref.subject, topic=ref.topic, teaching=ref.teaching
                ),
                total=len(questions),
                answered_right=sum(q.answered_right for q in questions),
                questions=questions,
            )
        )
    return ProgressOut(companions=out)


# -- judging a quiz lesson, off the lesson's path ---------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One review question as the judge saw it in a lesson."""

    question: str
    asked: bool
    correct: bool


def judge_request(questions: Sequence[str], lines: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The messages that ask the model to judge a quiz lesson's transcript."""
    numbered = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, start=1))
    said = "\n".join(f"{'Student' if role == 'user' else 'Tutor'}: {text}" for role, text in lines)
    return [
        {"role": "system", "content": JUDGE_PROMPT},
        {"role": "user", "content": f"Review questions:\n{numbered}\n\nTranscript:\n{said}"},
    ]


def judgement_schema(questions: int) -> dict[str, Any]:
    """The JSON schema of the judge's answer, which the embedded model's grammar holds every token to."""
    verdict = {
        "type": "object",
        "properties": {
            "question": {"enum": list(range(1, max(questions, 1) + 1))},
            "asked": {"type": "boolean"},
            "correct": {"type": "boolean"},
        },
        "required": ["question", "asked", "correct"],
    }
    return {
        "type": "object",
        "properties": {"results": {"type": "array", "items": verdict, "maxItems": max(questions, 1)}},
        "required": ["results"],
    }


def parse_judgement(answer: str, questions: Sequence[str]) -> list[Judged] | None:
    """The judge's JSON as one verdict per question it names; None when it is not that JSON (nothing is stored)."""
    found = _JSON_OBJECT.search(answer)
    try:
        data = json.loads(found.group(0), strict=False) if found else None
    except json.JSONDecodeError:
        data = None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return None
    judged: dict[int, Judged] = {}
    for item in results:
        if not isinstance(item, dict):
            continue
        number = item.get("question")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= len(questions):
            continue
        correct = item.get("correct") is True
        judged[number] = Judged(questions[number - 1], item.get("asked") is True or correct, correct)
    return [judged[n] for n in sorted(judged)]


class ReviewJudge:
    """After each quiz lesson, asks the model which review questions the learner answered right, and stores it.

    Cheap to build; `close` on shutdown. A failing or absent model costs nothing but that lesson's progress.
    """

    def __init__(
        self, settings: Settings, db: Database, language_model: Callable[[], LanguageModel | None] = lambda: None
    ) -> None:
        self._settings = settings
        self._db = db
        self._language_model = language_model
        self._tasks = BackgroundTasks(log, "teaching: judging a quiz lesson failed")

    def lesson_ended(self, lesson_id: int) -> None:
        """A lesson ended: judge it in the background if it was a quiz (returns at once)."""
        self._tasks.start(self.judge(lesson_id), f"teaching-judge-{lesson_id}")

    async def judge(self, lesson_id: int) -> list[Judged] | None:
        """Judge a quiz lesson's open review questions from its transcript and store the verdicts; None when
        there was nothing to judge or the model gave no usable answer."""
        async with self._db.read() as session:
            lesson = await store.quiz_lesson(session, lesson_id)
            if lesson is None or lesson.teaching != "quiz":
                return None
            # The questions its prompt listed (those still open, in the same order).
            limit = self._settings.voice.teaching.quiz_questions
            questions = await open_questions(session, lesson.learner_id, lesson.companion_id, limit)
        if not questions or not any(role == "user" and text.strip() for role, text in lesson.lines):
            return None
        answer = await self._ask(lesson_id, judge_request(questions, lesson.lines), len(questions))
        if answer is None:
            return None
        judged = parse_judgement(answer, questions)
        if judged is None:
            log.info("teaching: lesson %s: the judge's answer is not the JSON asked for; nothing stored", lesson_id)
            return None
        at = datetime.now(UTC)
        async with self._db.write() as session:
            for verdict in judged:
                if verdict.asked:
                    await store.record_asked(
                        session,
                        lesson.learner_id,
                        lesson.companion_id,
                        verdict.question,
                        lesson_id=lesson_id,
                        correct=verdict.correct,
                        at=at,
                    )
        log.info(
            "teaching: lesson %s: %d of %d review questions asked, %d answered right",
            lesson_id,
            sum(v.asked for v in judged),
            len(questions),
            sum(v.correct for v in judged),
        )
        return judged

    async def _ask(self, lesson_id: int, messages: list[dict[str, str]], questions: int) -> str | None:
        model = self._language_model()
        if model is None:
            return None
        return await model.write(
            f"lesson {lesson_id}'s quiz judgement",
            messages,
            max_tokens=JUDGE_MAX_TOKENS,
            timeout_secs=self._settings.voice.teaching.judge_timeout_secs,
            temperature=0,
            schema=judgement_schema(questions),
        )

    async def idle(self, within: float = 10.0) -> None:
        """Wait until every background task so far is done (tests; shutdown)."""
        await self._tasks.idle(within)

    async def close(self) -> None:
        await self._tasks.close(within=5.0)
