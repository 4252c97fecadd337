"""Queries on review questions: those past recaps asked a learner, and how the learner does on each since."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Companion, Lesson, ReviewProgress, TranscriptEntry

# What a question may hold (review_progress.question); a longer one is kept to this.
MAX_QUESTION = 500


@dataclass(frozen=True, slots=True)
class QuestionRecord:
    """A review question of one learner with one companion, and their progress on it (zeros: never asked)."""

    companion_id: int
    question: str
    lesson_id: int | None  # the lesson whose recap asked it
    asked_count: int
    answered_correctly_at: datetime | None
    last_asked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CompanionRef:
    id: int
    name: str
    subject: str
    topic: str
    teaching: str


@dataclass(frozen=True, slots=True)
class QuizLesson:
    """What a quiz lesson is judged from: whose it was, with which companion, and what was said."""

    lesson_id: int
    learner_id: int
    companion_id: int
    teaching: str
    lines: list[tuple[str, str]]  # (role, text) in spoken order


def _texts(raw: str | None) -> list[str]:
    try:
        found = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(q).strip()[:MAX_QUESTION] for q in found if str(q).strip()] if isinstance(found, list) else []


async def questions(session: AsyncSession, learner_id: int, companion_id: int | None = None) -> list[QuestionRecord]:
    """The review questions of the learner's written recaps (with one companion, or all), each once, oldest
    lesson first, with the learner's progress on each."""
    # Here, not at the top: the recaps' table (server/store/recaps.py) is another module's, added beside this one.
    from server.store.models import LessonRecap

    recaps = (
        select(Lesson.companion_id, Lesson.id, LessonRecap.review_questions)
        .join(LessonRecap, LessonRecap.lesson_id == Lesson.id)
        .where(Lesson.learner_id == learner_id, Lesson.companion_id.is_not(None), LessonRecap.status == "ready")
        .order_by(Lesson.started_at, Lesson.id)
    )
    progress = select(ReviewProgress).where(ReviewProgress.learner_id == learner_id)
    if companion_id is not None:
        recaps = recaps.where(Lesson.companion_id == companion_id)
        progress = progress.where(ReviewProgress.companion_id == companion_id)
    rows = {(r.companion_id, r.question): r for r in (await session.scalars(progress)).all()}
    found: dict[tuple[int, str], QuestionRecord] = {}
    for companion, lesson_id, raw in (await session.execute(recaps)).all():
        if companion is None:
            continue
        for text in _texts(raw):
            key = (int(companion), text)
            if key in found:
                continue
            row = rows.get(key)
            found[key] = QuestionRecord(
                key[0],
                text,
                lesson_id,
                row.asked_count if row is not None else 0,
                row.answered_correctly_at if row is not None else None,
                row.last_asked_at if row is not None else None,
            )
    return list(found.values())


async def companions(session: AsyncSession, ids: Sequence[int]) -> dict[int, CompanionRef]:
    if not ids:
        return {}
    query = select(Companion.id, Companion.name, Companion.subject, Companion.topic, Companion.teaching).where(
        Companion.id.in_(list(ids))
    )
    return {r[0]: CompanionRef(*r) for r in (await session.execute(query)).all()}


async def quiz_lesson(session: AsyncSession, lesson_id: int) -> QuizLesson | None:
    """The lesson with its companion's teaching style and its transcript; None if it or its companion is gone."""
    query = (
        select(Lesson.id, Lesson.learner_id, Lesson.companion_id, Companion.teaching)
        .join(Companion, Companion.id == Lesson.companion_id)
        .where(Lesson.id == lesson_id)
    )
    found = (await session.execute(query)).first()
    if found is None or found[2] is None:
        return None
    lines = (
        select(TranscriptEntry.role, TranscriptEntry.text)
        .where(TranscriptEntry.lesson_id == lesson_id)
        .order_by(TranscriptEntry.position)
    )
    companion_id: int = found[2]
    return QuizLesson(found[0], found[1], companion_id, found[3], [(r[0], r[1]) for r in await session.execute(lines)])


async def record_asked(
    session: AsyncSession,
    learner_id: int,
    companion_id: int,
    question: str,
    *,
    lesson_id: int | None,
    correct: bool,
    at: datetime,
) -> None:
    """One more time the learner was asked this question; `correct`: they answered it right (the first time
    they did is kept)."""
    query = select(ReviewProgress).where(
        ReviewProgress.learner_id == learner_id,
        ReviewProgress.companion_id == companion_id,
        ReviewProgress.question == question[:MAX_QUESTION],
    )
    row = (await session.scalars(query.with_for_update())).first()
    if row is None:
        row = ReviewProgress(
            learner_id=learner_id, companion_id=companion_id, question=question[:MAX_QUESTION], asked_count=0
        )
        session.add(row)
    row.asked_count = (row.asked_count or 0) + 1
    row.last_asked_at = at
    row.lesson_id = lesson_id
    if correct and row.answered_correctly_at is None:
        row.answered_correctly_at = at
    await session.flush()
