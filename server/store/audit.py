"""Queries on the audit log: who read or changed what."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import AuditEntry, User


def add(
    session: AsyncSession,
    *,
    actor_id: int | None,
    actor_email: str,
    action: str,
    learner_id: int | None = None,
    lesson_id: int | None = None,
    detail: str = "",
) -> AuditEntry:
    entry = AuditEntry(
        actor_id=actor_id,
        actor_email=actor_email,
        action=action,
        learner_id=learner_id,
        lesson_id=lesson_id,
        detail=detail,
    )
    session.add(entry)
    return entry


async def newest(
    session: AsyncSession, *, limit: int, before_id: int | None = None, action: str | None = None
) -> list[tuple[AuditEntry, str | None]]:
    """Newest first, each with its learner's name (None for none, or an account since deleted); `before_id` pages
    on (ids only grow, so they order like time)."""
    query = (
        select(AuditEntry, User.name)
        .outerjoin(User, User.id == AuditEntry.learner_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return [(entry, name) for entry, name in (await session.execute(query)).all()]


async def count_since(session: AsyncSession, since: datetime) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.at >= since)) or 0)
