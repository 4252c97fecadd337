"""Companions, the AI tutors learners build and browse: creation within plan limits, the library, edits.

Deleting a companion that has lessons (anyone's) archives it: it leaves the library and takes no new lessons,
while every lesson keeps it. Only a companion no one has used is erased.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from server import plans
from server.accounts import CurrentUser
from server.errors import Forbidden, NotFound
from server.settings import Settings
from server.store import companions as store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import Companion
from server.timeutil import as_utc
from server.voices import MAX_VOICE_ID, Catalogue, catalogue

SUBJECTS = (
    "maths",
    "language",
    "science",
    "history",
    "coding",
    "geography",
    "economics",
    "finance",
    "business",
)
Subject = Literal["maths", "language", "science", "history", "coding", "geography", "economics", "finance", "business"]
# An installed voice's id ("en_US-joe-medium"), checked against the server's voices when a companion is saved.
Voice = Annotated[str, Field(min_length=1, max_length=MAX_VOICE_ID)]
Style = Literal["formal", "casual"]
# How it teaches (server/teaching.py): explains, guides with questions, or quizzes on past recaps' questions.
Teaching = Literal["explain", "socratic", "quiz"]
Sort = Literal["recent", "popular", "name"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CompanionIn(_In):
    name: str = Field(min_length=1, max_length=100)
    subject: Subject
    topic: str = Field(min_length=1, max_length=200)
    voice: Voice
    style: Style
    teaching: Teaching = "explain"
    duration: int = Field(ge=1, le=120, description="Lesson length in whole minutes.")


class CompanionPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    subject: Subject | None = None
    topic: str | None = Field(default=None, min_length=1, max_length=200)
    voice: Voice | None = None
    style: Style | None = None
    teaching: Teaching | None = None
    duration: int | None = Field(default=None, ge=1, le=120)


class AuthorOut(BaseModel):
    id: int
    name: str


class CompanionOut(BaseModel):
    id: int
    name: str
    subject: str
    topic: str
    voice: str
    style: str
    teaching: str
    duration: int
    author: AuthorOut
    is_mine: bool
    bookmarked: bool
    lessons_count: int
    created_at: datetime
    updated_at: datetime
    # True when its author deleted it after lessons were held: only those lessons still show it.
    archived: bool = False


class CompanionPage(BaseModel):
    items: list[CompanionOut]
    page: int
    limit: int
    total: int


class CompanionList(BaseModel):
    items: list[CompanionOut]


# How long every viewer shares one read of a library page (another process's edits show after at most this).
LIBRARY_CACHE_SECS = 2.0


def view(row: store.CompanionRow, viewer_id: int) -> dict[str, Any]:
    """The companion as `CompanionOut` shows it, as a plain dict: what the read routes encode as it is.

    Our own columns are already of these types; building and validating a model for each of a list's rows
    cost a library page more CPU than its queries did.
    """
    c = row.companion
    return {
        "id": c.id,
        "name": c.name,
        "subject": c.subject,
        "topic": c.topic,
        "voice": c.voice,
        "style": c.style,
        "teaching": c.teaching,
        "duration": c.duration,
        "author": {"id": c.author_id, "name": row.author_name},
        "is_mine": c.author_id == viewer_id,
        "bookmarked": row.bookmarked,
        "lessons_count": row.lessons_count,
        "created_at": as_utc(c.created_at),
        "updated_at": as_utc(c.updated_at),
        "archived": c.archived_at is not None,
    }


def to_out(row: store.CompanionRow, viewer_id: int) -> CompanionOut:
    """The companion as a model, for the routes that write it (one row: validating it costs nothing there)."""
    return CompanionOut.model_validate(view(row, viewer_id))


async def create(
    db: Database, settings: Settings, user: CurrentUser, data: CompanionIn, voices: Catalogue | None = None
) -> CompanionOut:
    """Create a companion unless the author's plan is full; the count and insert share one locked transaction.

    Its voice must be one this server has (`voices`, the process's; read now when not given): a companion never
    promises a voice it cannot speak with.
    """
    (voices or catalogue(settings)).check(data.voice)
    async with db.write() as session:
        author = await user_store.lock(session, user.id)
        if author is None:
            raise NotFound("user_not_found", "Your account no longer exists.")
        limit, _ = plans.limits_for(settings, author.plan)
        if limit is not None and await store.count_by_author(session, user.id) >= limit:
            raise Forbidden(
                "companion_limit_reached",
                f"Your {author.plan} plan allows {limit} companions. Upgrade your plan to build more.",
            )
        companion = await store.create(session, user.id, data.model_dump())
        row = await store.one_row(session, user.id, companion.id)
    assert row is not None
    return to_out(row, user.id)


async def list_page(
    db: Database,
    user: CurrentUser,
    *,
    subject: str | None,
    topic: str | None,
    page: int,
    limit: int,
    sort: str = "recent",
    author_id: int | None = None,
    taught: bool = False,
) -> dict[str, Any]:
    """One page of the library as `CompanionPage` shows it (a plain dict, like `view`); `taught`: only companions
    that have had lessons."""
    filters = store.CompanionFilter(
        subject=subject or None, topic=(topic or "").strip() or None, author_id=author_id, taught=taught
    )
    offset = (page - 1) * limit

    async def read_page() -> tuple[list[store.CompanionRecord], int]:
        return await db.read_unit(lambda conn: store.page(conn, filters, offset=offset, limit=limit, sort=sort))

    # Every viewer of a page shares its rows and total; only their own bookmark flags are read for each.
    key = ("library", filters, offset, limit, sort)
    records, total = await db.shared_cache.get(key, LIBRARY_CACHE_SECS, read_page)
    rows = await db.read_unit(lambda conn: store.viewed(conn, user.id, records), quick=True)
    return {"items": [view(r, user.id) for r in rows], "page": page, "limit": limit, "total": total}


async def mine(db: Database, user: CurrentUser, *, page: int, limit: int) -> dict[str, Any]:
    """The companions I built that are still in the library, newest first."""
    return await list_page(db, user, subject=None, topic=None, page=page, limit=limit, author_id=user.id)


async def get(db: Database, user: CurrentUser, companion_id: int) -> dict[str, Any]:
    """The companion as `CompanionOut` shows it (a plain dict, like `view`)."""
    rows = await db.read_unit(
        lambda conn: store.viewed(conn, user.id, list(store.records_by_ids(conn, [companion_id]).values())),
        quick=True,
    )
    if not rows:
        raise NotFound("companion_not_found", "No companion with that id.")
    return view(rows[0], user.id)


async def _own(session: AsyncSession, user: CurrentUser, companion_id: int) -> Companion:
    """The author's companion, locked; an archived one has left the library and is not found."""
    companion = await store.lock(session, companion_id)
    if companion is None or companion.archived_at is not None:
        raise NotFound("companion_not_found", "No companion with that id.")
    if companion.author_id != user.id:
        raise Forbidden("not_author", "Only the companion's author can change it.")
    return companion


async def update(
    db: Database, user: CurrentUser, companion_id: int, patch: CompanionPatch, voices: Catalogue
) -> CompanionOut:
    if patch.voice is not None:
        voices.check(patch.voice)
    async with db.write() as session:
        companion = await _own(session, user, companion_id)
        # A field sent as null is left as it is: every column is required.
        changes = {key: value for key, value in patch.model_dump(exclude_unset=True).items() if value is not None}
        await store.change(session, companion, changes)
        row = await store.one_row(session, user.id, companion_id)
    assert row is not None
    return to_out(row, user.id)


async def delete(db: Database, user: CurrentUser, companion_id: int) -> None:
    """Erase the companion if no one ever had a lesson with it, else archive it so those lessons keep it."""
    async with db.write() as session:
        companion = await _own(session, user, companion_id)
        if await store.has_lessons(session, companion_id):
            await store.archive(session, companion, datetime.now(UTC))
        else:
            await store.erase(session, companion)


async def bookmarked(db: Database, user: CurrentUser, limit: int) -> dict[str, Any]:
    """The learner's bookmarked companions as `CompanionList` shows them (a plain dict, like `view`)."""
    async with db.read() as session:
        rows = await store.bookmarked_rows(session, user.id, limit)
    return {"items": [view(r, user.id) for r in rows]}
