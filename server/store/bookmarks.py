"""Queries on bookmarks: a learner's saved companions, one row per (learner, companion)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Bookmark


async def add(session: AsyncSession, learner_id: int, companion_id: int) -> None:
    """Save the companion for the learner; saving it again changes nothing (not even when it was saved)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(Bookmark).values(learner_id=learner_id, companion_id=companion_id).on_conflict_do_nothing()
    )


async def remove(session: AsyncSession, learner_id: int, companion_id: int) -> None:
    await session.execute(
        delete(Bookmark).where(Bookmark.learner_id == learner_id, Bookmark.companion_id == companion_id)
    )


async def for_learner(session: AsyncSession, learner_id: int) -> list[Bookmark]:
    return list((await session.execute(select(Bookmark).where(Bookmark.learner_id == learner_id))).scalars())
