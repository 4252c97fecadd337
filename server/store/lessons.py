"""Queries on lessons and their transcripts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Lesson, TranscriptEntry


async def count_for_learner(session: AsyncSession, learner_id: int, since: datetime | None = None) -> int:
    query = select(func.count()).select_from(Lesson).where(Lesson.learner_id == learner_id)
    if since is not None:
        query = query.where(Lesson.started_at >= since)
    return int(await session.scalar(query) or 0)


async def latest(session: AsyncSession, limit: int, learner_id: int | None = None) -> list[Lesson]:
    query = select(Lesson).order_by(Lesson.started_at.desc(), Lesson.id.desc()).limit(limit)
    if learner_id is not None:
        query = query.where(Lesson.learner_id == learner_id)
    return list((await session.execute(query)).scalars())


async def lock(session: AsyncSession, lesson_id: int) -> Lesson | None:
    result = await session.execute(select(Lesson).where(Lesson.id == lesson_id).with_for_update())
    return result.scalar_one_or_none()


async def transcript(session: AsyncSession, lesson_id: int) -> list[TranscriptEntry]:
    query = (
        select(TranscriptEntry)
        .where(TranscriptEntry.lesson_id == lesson_id)
        .order_by(TranscriptEntry.position)
    )
    return list((await session.execute(query)).scalars())


async def next_position(session: AsyncSession, lesson_id: int) -> int:
    query = select(func.coalesce(func.max(TranscriptEntry.position), 0)).where(
        TranscriptEntry.lesson_id == lesson_id
    )
    return int(await session.scalar(query) or 0) + 1
