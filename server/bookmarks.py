"""Bookmarks: a learner's saved companions, one per (learner, companion) however often it is saved."""

from __future__ import annotations

from server.accounts import CurrentUser
from server.errors import NotFound
from server.store import bookmarks as store
from server.store import companions as companion_store
from server.store.db import Database


async def add(db: Database, user: CurrentUser, companion_id: int) -> None:
    async with db.write() as session:
        companion = await companion_store.get(session, companion_id)
        # An archived companion has left the library: it can be unsaved, not saved anew.
        if companion is None or companion.archived_at is not None:
            raise NotFound("companion_not_found", "No companion with that id.")
        await store.add(session, user.id, companion_id)


async def remove(db: Database, user: CurrentUser, companion_id: int) -> None:
    async with db.write() as session:
        if await companion_store.get(session, companion_id) is None:
            raise NotFound("companion_not_found", "No companion with that id.")
        await store.remove(session, user.id, companion_id)
