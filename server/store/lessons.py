"""Queries on lessons and their transcripts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from server.store import companions as companion_store
from server.store.models import Bookmark, Companion, Lesson, LessonRecap, TranscriptEntry, User


async def count_for_learner(session: AsyncSession, learner_id: int, since: datetime | None = None) -> int:
    """Lessons the learner started (since a moment): the plan's usage, whatever became of their companions."""
    query = select(func.count()).select_from(Lesson).where(Lesson.learner_id == learner_id)
    if since is not None:
        query = query.where(Lesson.started_at >= since)
    return int(await session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class LessonRecord:
    """A lesson as a history list shows it, read as plain columns (no ORM entity)."""

    id: int
    companion_id: int | None
    companion_name: str | None
    companion_subject: str | None
    companion_topic: str | None
    started_at: datetime
    ended_at: datetime | None
    length_seconds: int | None
    end_reason: str | None
    # The lesson's recap status and what it covered (server/recaps.py), read with the history; None without one.
    recap: tuple[str, str] | None = None


_LESSON_COLUMNS = tuple(getattr(Lesson, name) for name in LessonRecord.__slots__ if name != "recap")


def latest_companion_ids(conn: Connection, limit: int) -> list[int]:
    """Ids of the library companions of the latest lessons of all learners, newest first, each once (a read unit).

    Reads the started_at index; companions that left the library are skipped.
    """
    query = (
        select(Lesson.companion_id)
        .join(Companion, Companion.id == Lesson.companion_id)
        .where(Companion.archived_at.is_(None))
        .order_by(Lesson.started_at.desc(), Lesson.id.desc())
        .limit(limit * 5)
    )
    ids = [i for i in conn.scalars(query) if i is not None]
    return list(dict.fromkeys(ids))[:limit]


def latest_companions(conn: Connection, limit: int) -> list[companion_store.CompanionRecord]:
    """The library companions of the latest lessons of all learners, newest first, each once (a read unit)."""
    order = latest_companion_ids(conn, limit)
    records = companion_store.records_by_ids(conn, order)
    return [records[i] for i in order if i in records]


_LESSON_WIDTH = len(_LESSON_COLUMNS)
_COMPANION_END = _LESSON_WIDTH + companion_store.RECORD_WIDTH

# Built once, with its parameters bound at each call: a learner's history is one statement, each lesson with
# its companion as it is now (archived ones too; none once erased) and the learner's own bookmark flag on it.
_HISTORY = (
    select(
        *_LESSON_COLUMNS,
        *companion_store.record_columns(),
        Bookmark.learner_id.is_not(None),
        LessonRecap.status,
        LessonRecap.covered,
    )
    .select_from(Lesson)
    .outerjoin(Companion, Companion.id == Lesson.companion_id)
    .outerjoin(User, User.id == Companion.author_id)
    .outerjoin(Bookmark, and_(Bookmark.companion_id == Companion.id, Bookmark.learner_id == Lesson.learner_id))
    .outerjoin(LessonRecap, LessonRecap.lesson_id == Lesson.id)
    .where(Lesson.learner_id == bindparam("learner_id"))
    .order_by(Lesson.started_at.desc(), Lesson.id.desc())
    .limit(bindparam("limit"))
)


def latest_with_companions(
    conn: Connection, learner_id: int, limit: int
) -> tuple[list[LessonRecord], dict[int, companion_store.CompanionRow]]:
    """The learner's latest lessons and their companions (archived ones too) as the learner sees them (a read unit)."""
    lessons: list[LessonRecord] = []
    rows: dict[int, companion_store.CompanionRow] = {}
    for r in conn.execute(_HISTORY, {"learner_id": learner_id, "limit": limit}):
        status, covered = r[_COMPANION_END + 1 :]
        columns: tuple[Any, ...] = (*r[:_LESSON_WIDTH], None if status is None else (status, covered))
        lesson = LessonRecord(*columns)
        lessons.append(lesson)
        if r[_LESSON_WIDTH] is not None:  # the companion's id: NULL once it was erased
            record = companion_store.CompanionRecord(*r[_LESSON_WIDTH:_COMPANION_END])
            rows[record.id] = companion_store.CompanionRow.of(record, bool(r[_COMPANION_END]))
    return lessons, rows


async def get(session: AsyncSession, lesson_id: int) -> Lesson | None:
    return await session.get(Lesson, lesson_id)


async def lock(session: AsyncSession, lesson_id: int) -> Lesson | None:
    result = await session.execute(select(Lesson).where(Lesson.id == lesson_id).with_for_update())
    return result.scalar_one_or_none()


async def hold(session: AsyncSession, lesson_id: int, holder: str) -> None:
    """Record which server instance holds an open lesson (a hosted lesson, with no holder, stays without)."""
    await session.execute(
        update(Lesson)
        .where(Lesson.id == lesson_id, Lesson.ended_at.is_(None), Lesson.holder.is_not(None))
        .values(holder=holder)
    )


async def mark_ended(session: AsyncSession, lesson_id: int, ended_at: datetime, length: int, reason: str) -> None:
    """Record the end unless one is already recorded."""
    await session.execute(
        update(Lesson)
        .where(Lesson.id == lesson_id, Lesson.ended_at.is_(None))
        .values(ended_at=ended_at, length_seconds=length, end_reason=reason)
    )


async def transcript(session: AsyncSession, lesson_id: int) -> list[TranscriptEntry]:
    query = select(TranscriptEntry).where(TranscriptEntry.lesson_id == lesson_id).order_by(TranscriptEntry.position)
    return list((await session.execute(query)).scalars())


async def next_position(session: AsyncSession, lesson_id: int) -> int:
    query = select(func.coalesce(func.max(TranscriptEntry.position), 0)).where(TranscriptEntry.lesson_id == lesson_id)
    return int(await session.scalar(query) or 0) + 1


async def lock_by_call(session: AsyncSession, call_id: str) -> Lesson | None:
    """The lesson a hosted call was recorded against, locked for the rest of the transaction."""
    result = await session.execute(select(Lesson).where(Lesson.external_call_id == call_id).with_for_update())
    return result.scalar_one_or_none()


async def lesson_id_for_call(session: AsyncSession, call_id: str) -> int | None:
    return await session.scalar(select(Lesson.id).where(Lesson.external_call_id == call_id))


async def has_external_entry(session: AsyncSession, lesson_id: int, external_id: str) -> bool:
    query = select(TranscriptEntry.id).where(
        TranscriptEntry.lesson_id == lesson_id, TranscriptEntry.external_id == external_id
    )
    return await session.scalar(query) is not None


async def clear_transcript(session: AsyncSession, lesson_id: int) -> None:
    await session.execute(delete(TranscriptEntry).where(TranscriptEntry.lesson_id == lesson_id))


async def add(
    session: AsyncSession, companion: Companion, learner_id: int, started_at: datetime, holder: str | None
) -> Lesson:
    """Insert a lesson with a snapshot of its companion, so the lesson still names it once the companion is gone."""
    lesson = Lesson(
        companion_id=companion.id,
        companion_name=companion.name,
        companion_subject=companion.subject,
        companion_topic=companion.topic,
        learner_id=learner_id,
        started_at=started_at,
        holder=holder,
    )
    session.add(lesson)
    await session.flush()
    return lesson


async def append_entry(
    session: AsyncSession,
    lesson_id: int,
    role: str,
    text: str,
    *,
    at: datetime | None = None,
    external_id: str | None = None,
    sources: str | None = None,
) -> None:
    """Add an utterance after the lesson's last one; hold the lesson's lock so two appends never share a number."""
    position = await next_position(session, lesson_id)
    entry = TranscriptEntry(
        lesson_id=lesson_id, position=position, role=role, text=text, external_id=external_id, sources=sources
    )
    if at is not None:
        entry.at = at
    session.add(entry)
    await session.flush()


@dataclass(frozen=True)
class NewEntry:
    role: str
    text: str
    at: datetime
    external_id: str | None = None


async def replace_transcript(session: AsyncSession, lesson_id: int, entries: Sequence[NewEntry]) -> None:
    """The lesson's transcript becomes exactly these utterances, numbered from 1 in this order."""
    await clear_transcript(session, lesson_id)
    for position, e in enumerate(entries, start=1):
        session.add(
            TranscriptEntry(
                lesson_id=lesson_id, position=position, role=e.role, text=e.text, at=e.at, external_id=e.external_id
            )
        )
    await session.flush()


async def tie_call(session: AsyncSession, lesson: Lesson, call_id: str) -> None:
    """Record the hosted call a (locked) lesson is held in."""
    lesson.external_call_id = call_id
    await session.flush()


async def close(
    session: AsyncSession,
    lesson: Lesson,
    ended_at: datetime,
    length: int,
    reason: str,
    *,
    reported_at: datetime | None = None,
) -> None:
    """Write a (locked) lesson's end; with `reported_at`, its call's final report is stored and nothing changes it."""
    lesson.ended_at = ended_at
    lesson.length_seconds = length
    lesson.end_reason = reason
    if reported_at is not None:
        lesson.call_reported_at = reported_at
    await session.flush()


async def for_learner(session: AsyncSession, learner_id: int) -> list[Lesson]:
    """Every lesson of the learner, oldest first."""
    query = select(Lesson).where(Lesson.learner_id == learner_id).order_by(Lesson.id)
    return list((await session.execute(query)).scalars())


async def transcripts(session: AsyncSession, lesson_ids: Sequence[int]) -> list[TranscriptEntry]:
    """The entries of these lessons, lesson by lesson, each in spoken order."""
    query = (
        select(TranscriptEntry)
        .where(TranscriptEntry.lesson_id.in_(lesson_ids))
        .order_by(TranscriptEntry.lesson_id, TranscriptEntry.position)
    )
    return list((await session.execute(query)).scalars())


async def prune_transcripts(session: AsyncSession, started_before: datetime) -> int:
    """Delete the transcripts of lessons started before a moment; returns how many entries went."""
    old_lessons = select(Lesson.id).where(Lesson.started_at < started_before)
    result = await session.execute(delete(TranscriptEntry).where(TranscriptEntry.lesson_id.in_(old_lessons)))
    return int(getattr(result, "rowcount", 0) or 0)
