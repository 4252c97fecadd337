"""Bookmarks: a learner's saved companions, one per (learner, companion) however often it is saved."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from server.accounts import CurrentUser
from server.errors import NotFound
from server.store.db import Database
from server.store.models import Bookmark, Companion


async def add(db: Database, user: CurrentUser, companion_id: int) -> None:
    insert = sqlite_insert if db.is_sqlite else pg_insert
    async with db.write() as session:
        companion = await session.get(Companion, companion_id)
        # An archived companion has left the library: it can be unsaved, not saved anew.
        if companion is None or companion.archived_at is not None:
            raise NotFound("companion_not_found", "No companion with that id.")
        await session.execute(
            insert(Bookmark).values(learner_id=user.id, companion_id=companion_id).on_conflict_do_nothing()
        )


async def remove(db: Database, user: CurrentUser, companion_id: int) -> None:
    async with db.write() as session:
        if await session.get(Companion, companion_id) is None:
            raise NotFound("companion_not_found", "No companion with that id.")
        await session.execute(
            delete(Bookmark).where(Bookmark.learner_id == user.id, Bookmark.companion_id == companion_id)
        )
