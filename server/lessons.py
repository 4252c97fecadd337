"""Lessons, the learner's history: starting one within the plan, listing them, transcripts, and ending."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from server import plans, teaching
from server.accounts import CurrentUser
from server.companions import LIBRARY_CACHE_SECS, CompanionOut, to_out, view
from server.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from server.recaps import RecapOut, recap_out, summary
from server.settings import Settings
from server.store import companions as companion_store
from server.store import lessons as store
from server.store import recaps as recap_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import Lesson, TranscriptEntry
from server.timeutil import as_utc

Role = Literal["user", "assistant"]


class SourceOut(BaseModel):
    """A passage of the teacher's materials that the tutor was given for its line (server/materials.py)."""

    material_id: int
    material: str
    position: int
    page: int | None = None
    heading: str | None = None
    excerpt: str


class TranscriptOut(BaseModel):
    order: int
    role: str
    text: str
    at: datetime
    # The tutor's line's sources; null for the learner's lines and lines that drew on none.
    sources: list[SourceOut] | None = None


class ErasedCompanionOut(BaseModel):
    """A lesson's companion after it was erased with its author's account: what the lesson recorded of it."""

    id: None = Field(default=None, description="Always null: the companion no longer exists.")
    name: str
    subject: str
    topic: str
    archived: bool = True


class LessonOut(BaseModel):
    id: int
    companion: CompanionOut | ErasedCompanionOut
    started_at: datetime
    ended_at: datetime | None
    length_seconds: int | None
    end_reason: str | None
    transcript: list[TranscriptOut] | None = None
    # One lesson's recap (null until one is asked for: server/recaps.py); a history list gives what it covered.
    recap: RecapOut | None = None
    recap_summary: str | None = None


class LessonList(BaseModel):
    items: list[LessonOut]


@dataclass(frozen=True)
class CompanionView:
    id: int
    name: str
    subject: str
    topic: str
    voice: str
    style: str
    duration: int
    teaching: str = "explain"


@dataclass(frozen=True)
class LiveLesson:
    """What the voice pipeline needs to run a lesson."""

    lesson_id: int
    learner_id: int
    started_at: datetime
    companion: CompanionView
    # A quiz: the review questions of past recaps not yet answered right (server/teaching.py).
    review_questions: tuple[str, ...] = ()


def _lesson_companion(
    lesson: Lesson | store.LessonRecord, rows: dict[int, companion_store.CompanionRow], viewer_id: int
) -> dict[str, Any]:
    """The companion as it is (archived ones included), else as the lesson recorded it (`ErasedCompanionOut`)."""
    row = rows.get(lesson.companion_id) if lesson.companion_id is not None else None
    if row is not None:
        return view(row, viewer_id)
    return {
        "id": None,
        # Only lessons bulk-loaded without a snapshot lack one.
        "name": lesson.companion_name or "A deleted companion",
        "subject": lesson.companion_subject or "",
        "topic": lesson.companion_topic or "",
        "archived": True,
    }


def _lesson_view(
    lesson: Lesson | store.LessonRecord,
    companion: dict[str, Any] | CompanionOut,
    transcript: list[TranscriptEntry] | None = None,
) -> dict[str, Any]:
    """The lesson as `LessonOut` shows it, as a plain dict: what the read routes encode as it is (see `view`)."""
    recap = lesson.recap if isinstance(lesson, store.LessonRecord) else None
    return {
        "id": lesson.id,
        "companion": companion,
        "started_at": as_utc(lesson.started_at),
        "ended_at": as_utc(lesson.ended_at) if lesson.ended_at else None,
        "length_seconds": lesson.length_seconds,
        "end_reason": lesson.end_reason,
        "transcript": None
        if transcript is None
        else [
            {
                "order": t.position,
                "role": t.role,
                "text": t.text,
                "at": as_utc(t.at),
                "sources": json.loads(t.sources) if t.sources else None,
            }
            for t in transcript
        ],
        "recap": None,
        "recap_summary": summary(*recap) if recap is not None else None,
    }


def _lesson_out(
    lesson: Lesson | store.LessonRecord,
    companion: dict[str, Any] | CompanionOut,
    transcript: list[TranscriptEntry] | None = None,
) -> LessonOut:
    """The lesson as a model, for one lesson (validating one costs nothing next to a history list's twenty)."""
    return LessonOut.model_validate(_lesson_view(lesson, companion, transcript))


# What a learner reads when no language model answers (the operator's instructions go to the log and the doctor).
TUTOR_UNAVAILABLE = "Lessons are unavailable right now: the tutor cannot answer. Please try again later."


async def start(
    db: Database,
    settings: Settings,
    user: CurrentUser,
    companion_id: int,
    *,
    holder: str | None = None,
    tutor_can_answer: bool = True,
) -> LessonOut:
    """Record a new lesson unless the plan's lesson limit is reached; the check and insert are one transaction.

    `holder` is the server instance that will run a local lesson's pipeline (hosted lessons have none), so the
    lesson can be ended if that process dies. With `tutor_can_answer` false (no language model answers) the
    lesson is refused before anything counts against the plan.
    """
    if not tutor_can_answer:
        raise ServiceUnavailable("llm_unavailable", TUTOR_UNAVAILABLE)
    async with db.write() as session:
        learner = await user_store.lock(session, user.id)
        if learner is None:
            raise NotFound("user_not_found", "Your account no longer exists.")
        companion = await companion_store.lock(session, companion_id, shared=True)
        if companion is None:
            raise NotFound("companion_not_found", "No companion with that id.")
        if companion.archived_at is not None:
            raise Conflict("companion_archived", "This companion has left the library; its lessons are kept.")
        _, limit = plans.limits_for(settings, learner.plan)
        if limit is not None:
            used = await store.count_for_learner(session, user.id, plans.lesson_period_start(settings))
            if used >= limit:
                period = "" if settings.plans.lesson_period == "all-time" else " this month"
                raise Forbidden(
                    "lesson_limit_reached",
                    f"Your {learner.plan} plan allows {limit} lessons{period}. Upgrade your plan for more.",
                )
        holder = holder if settings.voice.backend == "local" else None
        lesson = await store.add(session, companion, user.id, datetime.now(UTC), holder)
        row = await companion_store.one_row(session, user.id, companion_id)
    assert row is not None
    return _lesson_out(lesson, to_out(row, user.id))


async def mine(db: Database, user: CurrentUser, limit: int) -> dict[str, Any]:
    """The learner's latest lessons as `LessonList` shows them (a plain dict, like `companions.view`)."""
    # One indexed statement (the learner's latest lessons joined to their companions): quick enough for the loop.
    lessons, rows = await db.read_unit(lambda conn: store.latest_with_companions(conn, user.id, limit), quick=True)
    return {"items": [_lesson_view(x, _lesson_companion(x, rows, user.id)) for x in lessons]}


async def recent_companions(db: Database, user: CurrentUser, limit: int) -> dict[str, Any]:
    """Companions of the latest lessons of all learners, newest first, each once; no learner is named.

    Shaped as `CompanionList` (a plain dict, like `companions.view`).
    """

    async def read_recent() -> list[companion_store.CompanionRecord]:
        return await db.read_unit(lambda conn: store.latest_companions(conn, limit))

    # The same for every viewer, like a library page; only the bookmark flags are each viewer's own.
    records = await db.shared_cache.get(("recent", limit), LIBRARY_CACHE_SECS, read_recent)
    rows = await db.read_unit(lambda conn: companion_store.viewed(conn, user.id, records), quick=True)
    return {"items": [view(r, user.id) for r in rows]}


async def get(db: Database, user: CurrentUser, lesson_id: int) -> LessonOut:
    """A lesson with its transcript; other learners' lessons are reported as absent."""
    async with db.read() as session:
        found = await lesson_for_reader(session, user, lesson_id)
    if found is None or found[1] != user.id:
        raise NotFound("lesson_not_found", "No lesson with that id.")
    return found[0]


async def lesson_for_reader(session: AsyncSession, reader: CurrentUser, lesson_id: int) -> tuple[LessonOut, int] | None:
    """Any lesson with its transcript and its learner's id, its companion as `reader` sees it; the caller decides
    whether `reader` may see it (its learner, or their teacher: server/classes.py)."""
    lesson = await store.get(session, lesson_id)
    if lesson is None:
        return None
    ids = [] if lesson.companion_id is None else [lesson.companion_id]
    rows = await companion_store.rows_by_ids(session, reader.id, ids, archived=True)
    transcript = await store.transcript(session, lesson_id)
    out = _lesson_out(lesson, _lesson_companion(lesson, rows, reader.id), transcript)
    recap = await recap_store.get(session, lesson_id)
    out.recap = recap_out(recap) if recap is not None else None
    return out, lesson.learner_id


async def lessons_for_reader(db: Database, reader: CurrentUser, learner_id: int, limit: int) -> list[dict[str, Any]]:
    """A learner's latest lessons (no transcripts) as `LessonOut` shows them, for a reader allowed to see them."""
    found, rows = await db.read_unit(lambda conn: store.latest_with_companions(conn, learner_id, limit))
    return [_lesson_view(x, _lesson_companion(x, rows, reader.id)) for x in found]


async def _live_lesson(db: Database, lesson_id: int, learner_id: int | None) -> LiveLesson:
    async with db.read() as session:
        lesson = await store.get(session, lesson_id)
        if lesson is None or (learner_id is not None and lesson.learner_id != learner_id):
            raise NotFound("lesson_not_found", "No lesson with that id.")
        if lesson.ended_at is not None:
            raise Conflict("lesson_ended", "This lesson has ended; start a new one.")
        # An archived companion still teaches the lessons already started with it.
        c = None if lesson.companion_id is None else await companion_store.get(session, lesson.companion_id)
        questions = (
            await teaching.open_questions(session, lesson.learner_id, c.id)
            if c is not None and c.teaching == "quiz"
            else []
        )
    if c is None:
        raise Conflict("companion_deleted", "This lesson's companion was deleted; start a lesson with another one.")
    view = CompanionView(c.id, c.name, c.subject, c.topic, c.voice, c.style, c.duration, c.teaching)
    return LiveLesson(lesson.id, lesson.learner_id, as_utc(lesson.started_at), view, review_questions=tuple(questions))


async def get_live_lesson(db: Database, lesson_id: int, learner_id: int, *, holder: str | None = None) -> LiveLesson:
    """The learner's open lesson.

    With `holder`, the server instance about to run its pipeline (its offer goes to the process a load balancer
    picks by lesson id, not necessarily the one that created the lesson), the lesson is held by that instance
    from now on.
    """
    live = await _live_lesson(db, lesson_id, learner_id)
    if holder is not None:
        async with db.write() as session:
            await store.hold(session, lesson_id, holder)
    return live


async def get_call_lesson(db: Database, lesson_id: int) -> LiveLesson:
    """A live lesson named by a hosted call (whose webhook is authenticated as Vapi, not as a learner)."""
    return await _live_lesson(db, lesson_id, None)


async def append_transcript(
    db: Database, lesson_id: int, role: Role, text: str, *, sources: Sequence[Mapping[str, Any]] = ()
) -> None:
    """Append one final utterance (a tutor line with the `sources` it drew on); numbered in the order they arrive."""
    async with db.write() as session:
        if await store.lock(session, lesson_id) is None:
            raise NotFound("lesson_not_found", "No lesson with that id.")
        stored = json.dumps([dict(s) for s in sources], ensure_ascii=False) if sources else None
        await store.append_entry(session, lesson_id, role, text, sources=stored)


async def end_lesson(db: Database, lesson_id: int, reason: str, *, ended_at: datetime | None = None) -> None:
    """Store when and why a lesson ended; only the first end counts."""
    ended_at = ended_at or datetime.now(UTC)
    async with db.write() as session:
        lesson = await store.lock(session, lesson_id)
        if lesson is None or lesson.ended_at is not None:
            return
        length = max(0, round((ended_at - as_utc(lesson.started_at)).total_seconds()))
        await store.mark_ended(session, lesson_id, ended_at, length, reason)
