"""Queries on lesson recaps and on what the tutor remembers about each learner (their facts, per companion)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Companion, LearnerFact, Lesson, LessonRecap, TranscriptEntry


@dataclass(frozen=True, slots=True)
class RecapRecord:
    lesson_id: int
    status: str
    covered: str
    hard: str
    questions: list[str]
    model: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FactRecord:
    id: int
    companion_id: int
    companion_name: str
    text: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LessonForRecap:
    """What a recap is written from: whose lesson, with which companion, and its transcript in spoken order."""

    lesson_id: int
    learner_id: int
    companion_id: int | None
    topic: str
    ended: bool
    lines: list[tuple[str, str]]  # (role, text)


def _questions(raw: str) -> list[str]:
    try:
        found = json.loads(raw)
    except ValueError:
        return []
    return [str(q) for q in found] if isinstance(found, list) else []


def _record(row: LessonRecap) -> RecapRecord:
    return RecapRecord(
        row.lesson_id, row.status, row.covered, row.hard, _questions(row.review_questions), row.model, row.created_at
    )


async def get(session: AsyncSession, lesson_id: int) -> RecapRecord | None:
    row = await session.get(LessonRecap, lesson_id)
    return None if row is None else _record(row)


_SUMMARIES = select(LessonRecap.lesson_id, LessonRecap.status, LessonRecap.covered).where(
    LessonRecap.lesson_id.in_(bindparam("ids", expanding=True))
)


def summaries(conn: Connection, lesson_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Each lesson's recap status and what it covered, by lesson id (a read unit; lessons without one are absent)."""
    if not lesson_ids:
        return {}
    return {r[0]: (r[1], r[2]) for r in conn.execute(_SUMMARIES, {"ids": list(lesson_ids)})}


async def lesson_for_recap(session: AsyncSession, lesson_id: int) -> LessonForRecap | None:
    lesson = await session.get(Lesson, lesson_id)
    if lesson is None:
        return None
    query = (
        select(TranscriptEntry.role, TranscriptEntry.text)
        .where(TranscriptEntry.lesson_id == lesson_id)
        .order_by(TranscriptEntry.position)
    )
    lines = [(r[0], r[1]) for r in await session.execute(query)]
    return LessonForRecap(
        lesson.id,
        lesson.learner_id,
        lesson.companion_id,
        lesson.companion_topic or "",
        lesson.ended_at is not None,
        lines,
    )


async def put(
    session: AsyncSession,
    lesson_id: int,
    status: str,
    *,
    covered: str = "",
    hard: str = "",
    questions: Sequence[str] = (),
    model: str | None = None,
) -> RecapRecord:
    """Write a lesson's recap, replacing the one it had."""
    row = await session.get(LessonRecap, lesson_id, with_for_update=True)
    if row is None:
        row = LessonRecap(lesson_id=lesson_id)
        session.add(row)
    row.status = status
    row.covered = covered
    row.hard = hard
    row.review_questions = json.dumps(list(questions))
    row.model = model
    row.created_at = datetime.now(UTC)
    await session.flush()
    return _record(row)


async def pending_lesson_ids(session: AsyncSession, limit: int = 100) -> list[int]:
    """Lessons whose recap was asked for and not written (the server stopped first), oldest first."""
    query = select(LessonRecap.lesson_id).where(LessonRecap.status == "pending").order_by(LessonRecap.lesson_id)
    return list((await session.scalars(query.limit(limit))).all())


async def latest_recaps(
    session: AsyncSession, learner_id: int, companion_id: int, limit: int, *, before_lesson: int | None = None
) -> list[RecapRecord]:
    """The learner's last `limit` written recaps with this companion, newest first."""
    query = (
        select(LessonRecap)
        .join(Lesson, Lesson.id == LessonRecap.lesson_id)
        .where(Lesson.learner_id == learner_id, Lesson.companion_id == companion_id, LessonRecap.status == "ready")
        .order_by(Lesson.started_at.desc(), Lesson.id.desc())
        .limit(limit)
    )
    if before_lesson is not None:
        query = query.where(Lesson.id != before_lesson)
    return [_record(r) for r in (await session.scalars(query)).all()]


async def facts(session: AsyncSession, learner_id: int, companion_id: int | None = None) -> list[FactRecord]:
    """The learner's facts (with one companion, or with all), oldest first within each companion."""
    query = (
        select(LearnerFact.id, LearnerFact.companion_id, Companion.name, LearnerFact.text, LearnerFact.updated_at)
        .join(Companion, Companion.id == LearnerFact.companion_id)
        .where(LearnerFact.learner_id == learner_id)
        .order_by(LearnerFact.companion_id, LearnerFact.id)
    )
    if companion_id is not None:
        query = query.where(LearnerFact.companion_id == companion_id)
    return [FactRecord(*r) for r in await session.execute(query)]


async def replace_facts(session: AsyncSession, learner_id: int, companion_id: int, texts: Sequence[str]) -> None:
    """The learner's facts with this companion become `texts`: the ones already there keep their row and age."""
    query = select(LearnerFact).where(LearnerFact.learner_id == learner_id, LearnerFact.companion_id == companion_id)
    existing = {row.text: row for row in (await session.scalars(query.with_for_update())).all()}
    wanted = list(dict.fromkeys(texts))
    for text, row in existing.items():
        if text not in wanted:
            await session.delete(row)
    for text in wanted:
        if text not in existing:
            session.add(LearnerFact(learner_id=learner_id, companion_id=companion_id, text=text))
    await session.flush()


async def delete_fact(session: AsyncSession, learner_id: int, fact_id: int) -> bool:
    """Delete one of the learner's facts; False when they have none with that id."""
    result = await session.execute(
        delete(LearnerFact).where(LearnerFact.id == fact_id, LearnerFact.learner_id == learner_id)
    )
    return bool(getattr(result, "rowcount", 0))
