"""Queries on usage across the school: accounts by role and plan, lessons held, learners near their plan's limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Lesson, User


async def accounts_by(session: AsyncSession, column: str) -> dict[str, int]:
    """How many accounts have each value of `column` ("role" or "plan")."""
    field = getattr(User, column)
    result = await session.execute(select(field, func.count()).group_by(field))
    return {str(value): int(count) for value, count in result}


async def disabled_accounts(session: AsyncSession) -> int:
    query = select(func.count()).select_from(User).where(User.disabled_at.is_not(None))
    return int(await session.scalar(query) or 0)


async def lessons_since(session: AsyncSession, since: datetime | None = None) -> int:
    query = select(func.count()).select_from(Lesson)
    if since is not None:
        query = query.where(Lesson.started_at >= since)
    return int(await session.scalar(query) or 0)


async def seconds_since(session: AsyncSession, since: datetime) -> int:
    """Seconds of lessons started since a moment (lessons still running count once they end)."""
    query = select(func.coalesce(func.sum(Lesson.length_seconds), 0)).where(Lesson.started_at >= since)
    return int(await session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class NearLimit:
    id: int
    name: str
    plan: str
    lessons_used: int


async def near_lesson_limit(
    session: AsyncSession, thresholds: Mapping[str, int], since: datetime | None, limit: int = 50
) -> list[NearLimit]:
    """Enabled accounts that started at least their plan's threshold of lessons (since a moment), most first.

    `thresholds` maps each plan with a lesson limit to the count from which it is "near"; other plans are left
    out. One grouped query on the lessons of those plans' accounts.
    """
    if not thresholds:
        return []
    joined = Lesson.learner_id == User.id
    if since is not None:
        joined = joined & (Lesson.started_at >= since)
    used = func.count(Lesson.id)
    threshold = case(thresholds, value=User.plan)
    query = (
        select(User.id, User.name, User.plan, used.label("used"))
        .join(Lesson, joined)
        .where(User.plan.in_(list(thresholds)), User.disabled_at.is_(None))
        .group_by(User.id, User.name, User.plan)
        .having(used >= threshold)
        .order_by(used.desc(), User.id)
        .limit(limit)
    )
    return [NearLimit(int(i), name, plan, int(n)) for i, name, plan, n in await session.execute(query)]
