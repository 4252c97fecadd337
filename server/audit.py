"""The audit log: every time a teacher or administrator reads a learner's transcript or changes an account.

Entries are written in the same transaction as what they record, so a read that is answered is a read that is
logged; only administrators read the log.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts import CurrentUser
from server.store import audit as audit_store
from server.store.db import Database
from server.store.models import AuditEntry
from server.timeutil import as_utc

TRANSCRIPT_READ = "transcript.read"


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor_email: str
    action: str
    learner_id: int | None
    learner_name: str | None
    lesson_id: int | None
    detail: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    # Pass as `before` for the next (older) page; None on the last page.
    next_before: int | None


def record(
    session: AsyncSession,
    actor: CurrentUser,
    action: str,
    *,
    learner_id: int | None = None,
    lesson_id: int | None = None,
    detail: str = "",
) -> None:
    """Add an entry to the caller's transaction: it commits (or rolls back) with what it records."""
    audit_store.add(
        session,
        actor_id=actor.id,
        actor_email=actor.email,
        action=action,
        learner_id=learner_id,
        lesson_id=lesson_id,
        detail=detail,
    )


def _out(entry: AuditEntry, learner_name: str | None) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=as_utc(entry.at),
        actor_id=entry.actor_id,
        actor_email=entry.actor_email,
        action=entry.action,
        learner_id=entry.learner_id,
        learner_name=learner_name,
        lesson_id=entry.lesson_id,
        detail=entry.detail,
    )


async def newest(db: Database, *, limit: int, before: int | None = None, action: str | None = None) -> AuditPage:
    async with db.read() as session:
        entries = await audit_store.newest(session, limit=limit + 1, before_id=before, action=action)
    page = [_out(e, name) for e, name in entries[:limit]]
    return AuditPage(entries=page, next_before=page[-1].id if len(entries) > limit and page else None)
