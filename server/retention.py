"""A learner's data on request: export everything we hold about them, delete it, and prune old transcripts
(on request, and by the server itself every `retention.interval_secs`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server import accounts, audit
from server.accounts import CurrentUser
from server.settings import Settings
from server.store import bookmarks as bookmark_store
from server.store import classes as class_store
from server.store import companions as companion_store
from server.store import lessons as lesson_store
from server.store import safety as safety_store
from server.store import school_settings as school_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import User
from server.timeutil import as_utc

log = logging.getLogger(__name__)

# Where the app keeps this process's RetentionKeeper (AppState.extras).
EXTRAS_KEY = "retention"
EXPORT = "user.export"
DELETE = "user.delete"
PRUNE = "retention.run"


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


async def export_learner(db: Database, who: int | str, *, actor: CurrentUser | None = None) -> dict[str, Any]:
    """Everything stored about one learner (by id or email), as plain JSON-ready data.

    With `actor` (an administrator in the page) the export is written to the audit log in the same transaction
    as the reads, so no export goes unrecorded; the command line's has no one to name.
    """
    if actor is None:
        async with db.read() as session:
            return await _export(session, await accounts.find(session, who))
    async with db.write() as session:
        user = await accounts.find(session, who)
        data = await _export(session, user)
        audit.record(session, actor, EXPORT, learner_id=user.id, detail=f"exported {user.email}")
        return data


async def _export(session: AsyncSession, user: User) -> dict[str, Any]:
    companions = await companion_store.by_author(session, user.id)
    lessons = await lesson_store.for_learner(session, user.id)
    entries = await lesson_store.transcripts(session, [x.id for x in lessons])
    by_lesson: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        by_lesson.setdefault(e.lesson_id, []).append({"role": e.role, "text": e.text, "at": _iso(e.at)})
    marks = await bookmark_store.for_learner(session, user.id)
    flags = await safety_store.of_learner(session, user.id)
    classes = await class_store.learner_class_ids(session, user.id)
    return {
        "account": {
            "email": user.email,
            "name": user.name,
            "plan": user.plan,
            "role": user.role,
            "sso": user.oidc_subject is not None,
            "created_at": _iso(user.created_at),
        },
        "companions": [
            {
                "id": c.id,
                "name": c.name,
                "subject": c.subject,
                "topic": c.topic,
                "voice": c.voice,
                "style": c.style,
                "duration": c.duration,
                "created_at": _iso(c.created_at),
            }
            for c in companions
        ],
        "lessons": [
            {
                "id": x.id,
                "companion_id": x.companion_id,
                "companion": {"name": x.companion_name, "subject": x.companion_subject, "topic": x.companion_topic},
                "started_at": _iso(x.started_at),
                "ended_at": _iso(x.ended_at),
                "length_seconds": x.length_seconds,
                "end_reason": x.end_reason,
                "transcript": by_lesson.get(x.id, []),
            }
            for x in lessons
        ],
        "bookmarks": [{"companion_id": b.companion_id, "created_at": _iso(b.created_at)} for b in marks],
        "classes": classes,
        "safety_flags": [
            {
                "lesson_id": f.lesson_id,
                "role": f.role,
                "text": f.text,
                "category": f.category,
                "severity": f.severity,
                "action": f.action,
                "created_at": _iso(f.created_at),
            }
            for f in flags
        ],
    }


async def delete_learner(db: Database, who: int | str, *, actor: CurrentUser | None = None) -> str:
    """Delete the account (by id or email); its companions, lessons, transcripts and bookmarks go with it (ON
    DELETE CASCADE). Returns the email it had.

    Other learners' lessons with its companions stay: their `companion_id` becomes NULL (ON DELETE SET NULL) and
    each keeps the companion's name, subject and topic, which were never the deleted learner's data. With
    `actor` the deletion is audited in the same transaction; the entry names the account by email and id, since
    its learner_id cannot outlive the row.
    """
    async with db.write() as session:
        user = await accounts.find(session, who, lock=True)
        email = user.email
        if actor is not None:
            audit.record(session, actor, DELETE, detail=f"deleted {email} (id {user.id}, {user.role})")
        await user_store.delete(session, user)
        return email


async def prune_transcripts(db: Database, older_than_days: int, *, actor: CurrentUser | None = None) -> int:
    """Delete transcripts of lessons started more than N days ago; the lessons themselves stay in the history.

    Returns how many transcript entries (utterances) went.
    """
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    async with db.write() as session:
        deleted = await lesson_store.prune_transcripts(session, cutoff)
        # A flag on such a lesson keeps what it was (category, severity, when), not the words.
        await safety_store.prune_texts(session, cutoff)
        if actor is not None:
            detail = f"{deleted} transcript entries of lessons older than {older_than_days} days"
            audit.record(session, actor, PRUNE, detail=detail)
        return deleted


async def retention_days(db: Database, settings: Settings) -> int | None:
    """Days transcripts are kept: the administrator's choice, else retention.days; None = kept for good."""
    async with db.read() as session:
        days = await school_store.retention_days(session, settings.retention.days)
    return days or None


class RetentionKeeper:
    """Deletes old transcripts every `retention.interval_secs`, in the background of a serving process.

    It reads the retention days afresh each time, so an administrator's change needs no restart. Several
    processes each running it is harmless: a second delete finds nothing left.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._prune_forever(), name="retention")

    async def run_once(self) -> int:
        """One pass: how many transcript entries went (0 while transcripts are kept for good)."""
        days = await retention_days(self.db, self.settings)
        if days is None:
            return 0
        deleted = await prune_transcripts(self.db, days)
        if deleted:
            log.info("retention: deleted %d transcript entries of lessons older than %d days", deleted, days)
        return deleted

    async def _prune_forever(self) -> None:
        interval = self.settings.retention.interval_secs
        while True:
            try:
                await self.run_once()
            except Exception:
                # A database outage must not end retention for good: the next pass tries again.
                log.exception("retention: deleting old transcripts failed; next try in %ss", interval)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
