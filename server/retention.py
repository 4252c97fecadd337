"""A learner's data on request: export everything we hold about them, delete it, and prune old transcripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from server.accounts import normalize_email
from server.errors import NotFound
from server.store import bookmarks as bookmark_store
from server.store import companions as companion_store
from server.store import lessons as lesson_store
from server.store import users as user_store
from server.store.db import Database
from server.timeutil import as_utc


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


async def export_learner(db: Database, email: str) -> dict[str, Any]:
    """Everything stored about one learner, as plain JSON-ready data."""
    async with db.read() as session:
        user = await user_store.by_email(session, normalize_email(email))
        if user is None:
            raise NotFound("user_not_found", f"no account with email {email}")
        companions = await companion_store.by_author(session, user.id)
        lessons = await lesson_store.for_learner(session, user.id)
        entries = await lesson_store.transcripts(session, [x.id for x in lessons])
        by_lesson: dict[int, list[dict[str, Any]]] = {}
        for e in entries:
            by_lesson.setdefault(e.lesson_id, []).append({"role": e.role, "text": e.text, "at": _iso(e.at)})
        marks = await bookmark_store.for_learner(session, user.id)
        return {
            "account": {
                "email": user.email,
                "name": user.name,
                "plan": user.plan,
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
        }


async def delete_learner(db: Database, email: str) -> None:
    """Delete the account; its companions, lessons, transcripts and bookmarks go with it (ON DELETE CASCADE).

    Other learners' lessons with its companions stay: their `companion_id` becomes NULL (ON DELETE SET NULL) and
    each keeps the companion's name, subject and topic, which were never the deleted learner's data.
    """
    async with db.write() as session:
        user = await user_store.by_email(session, normalize_email(email))
        if user is None:
            raise NotFound("user_not_found", f"no account with email {email}")
        await user_store.delete(session, user)


async def prune_transcripts(db: Database, older_than_days: int) -> int:
    """Delete transcripts of lessons started more than N days ago; the lessons themselves stay in the history."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    async with db.write() as session:
        return await lesson_store.prune_transcripts(session, cutoff)
