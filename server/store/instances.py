"""Queries on server instances: heartbeats, and the open lessons whose holder stopped beating."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Lesson, ServerInstance


@dataclass(frozen=True)
class OrphanedLesson:
    lesson_id: int
    started_at: datetime
    # The holder's last heartbeat; None when its row is already gone.
    last_heartbeat: datetime | None


async def beat(session: AsyncSession, instance_id: str, hostname: str, pid: int, now: datetime) -> None:
    """Record a heartbeat, registering the instance if it has no row (first beat, or swept after a stall)."""
    result = await session.execute(
        update(ServerInstance).where(ServerInstance.id == instance_id).values(heartbeat_at=now)
    )
    if not getattr(result, "rowcount", 0):
        session.add(ServerInstance(id=instance_id, hostname=hostname, pid=pid, started_at=now, heartbeat_at=now))
        await session.flush()


async def remove(session: AsyncSession, instance_id: str) -> None:
    await session.execute(delete(ServerInstance).where(ServerInstance.id == instance_id))


async def remove_stale(session: AsyncSession, live_since: datetime) -> None:
    await session.execute(delete(ServerInstance).where(ServerInstance.heartbeat_at < live_since))


async def open_held_by(session: AsyncSession, instance_id: str) -> list[int]:
    """Ids of the open lessons an instance holds."""
    query = select(Lesson.id).where(Lesson.ended_at.is_(None), Lesson.holder == instance_id).order_by(Lesson.id)
    return list((await session.execute(query)).scalars())


async def orphaned_lessons(session: AsyncSession, live_since: datetime) -> list[OrphanedLesson]:
    """Open lessons held by an instance that has not beaten since `live_since`, or that has no row.

    Lessons without a holder (hosted calls) are never among them.
    """
    query = (
        select(Lesson.id, Lesson.started_at, ServerInstance.heartbeat_at)
        .outerjoin(ServerInstance, ServerInstance.id == Lesson.holder)
        .where(
            Lesson.ended_at.is_(None),
            Lesson.holder.is_not(None),
            or_(ServerInstance.id.is_(None), ServerInstance.heartbeat_at < live_since),
        )
        .order_by(Lesson.id)
    )
    return [OrphanedLesson(r[0], r[1], r[2]) for r in (await session.execute(query)).all()]
