"""Queries on companions: the filtered, paginated library, the author's own list, archiving and erasing.

The library and every list drawn from it show only companions in the library (not archived); a lesson's own
view of its companion asks for archived ones too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, func, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.store.models import Bookmark, Companion, Lesson, User


@dataclass(frozen=True)
class CompanionFilter:
    subject: str | None = None
    topic: str | None = None
    author_id: int | None = None
    # Only companions that have had at least one lesson (home's "Popular": a companion nobody used is not).
    taught: bool = False


@dataclass(frozen=True, slots=True)
class CompanionRecord:
    """A companion as lists show it, read as plain columns (no ORM entity): the same for every viewer."""

    id: int
    name: str
    subject: str
    topic: str
    voice: str
    style: str
    teaching: str
    duration: int
    author_id: int
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    author_name: str
    lessons_count: int


@dataclass(frozen=True, slots=True)
class CompanionRow:
    """A companion and what one viewer sees of it."""

    companion: CompanionRecord
    author_name: str
    bookmarked: bool
    lessons_count: int

    @classmethod
    def of(cls, record: CompanionRecord, bookmarked: bool) -> CompanionRow:
        return cls(record, record.author_name, bookmarked, record.lessons_count)


def escape_like(term: str) -> str:
    """Make `%`, `_` and the escape character itself match literally in a LIKE pattern."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


IN_LIBRARY = Companion.archived_at.is_(None)


def _where(query: Select[Any], filters: CompanionFilter) -> Select[Any]:
    # The same term as the partial indexes' WHERE, so the planners can use them.
    query = query.where(IN_LIBRARY)
    if filters.subject:
        query = query.where(Companion.subject == filters.subject)
    if filters.author_id is not None:
        query = query.where(Companion.author_id == filters.author_id)
    if filters.taught:
        query = query.where(exists().where(Lesson.companion_id == Companion.id))
    if filters.topic:
        pattern = f"%{escape_like(filters.topic.lower())}%"
        query = query.where(
            or_(
                func.lower(Companion.topic).like(pattern, escape="\\"),
                func.lower(Companion.name).like(pattern, escape="\\"),
            )
        )
    return query


def record_columns() -> tuple[Any, ...]:
    """The columns of a `CompanionRecord`, in its field order (`companions` joined to its author in `users`)."""
    # Over an alias of `lessons`, so a query that also reads `lessons` (a learner's history) still counts every
    # lesson of the companion here, not only that row.
    counted = aliased(Lesson)
    lessons_count = (
        select(func.count()).select_from(counted).where(counted.companion_id == Companion.id).scalar_subquery()
    )
    return (
        Companion.id,
        Companion.name,
        Companion.subject,
        Companion.topic,
        Companion.voice,
        Companion.style,
        Companion.teaching,
        Companion.duration,
        Companion.author_id,
        Companion.created_at,
        Companion.updated_at,
        Companion.archived_at,
        User.name,
        lessons_count,
    )


def _records_query() -> Select[Any]:
    return select(*record_columns()).join(User, User.id == Companion.author_id)


RECORD_WIDTH = len(CompanionRecord.__slots__)


def _records(result: Sequence[Any]) -> list[CompanionRecord]:
    # Rows may carry extra trailing columns (the viewer's flag, the page's total) after the record's own.
    return [CompanionRecord(*r[:RECORD_WIDTH]) for r in result]


def _rows_query(viewer_id: int) -> Select[Any]:
    query: Select[Any] = _records_query().add_columns(Bookmark.learner_id.is_not(None))
    return query.outerjoin(Bookmark, and_(Bookmark.companion_id == Companion.id, Bookmark.learner_id == viewer_id))


def _rows(result: Sequence[Any]) -> list[CompanionRow]:
    return [CompanionRow.of(record, bool(r[RECORD_WIDTH])) for record, r in zip(_records(result), result, strict=True)]


def _count(filters: CompanionFilter) -> Select[Any]:
    return _where(select(func.count()).select_from(Companion), filters)


def page(
    conn: Connection, filters: CompanionFilter, *, offset: int, limit: int, sort: str
) -> tuple[list[CompanionRecord], int]:
    """One page of companions, newest (or most taught) first, and the total that match: the same for everyone.

    A read unit (`Database.read_unit`); the viewer's own flags come from `bookmarked_among`.
    """
    query = _where(_records_query(), filters)
    if sort == "popular":
        popularity = select(Lesson.companion_id, func.count().label("n")).group_by(Lesson.companion_id).subquery()
        query = query.outerjoin(popularity, popularity.c.companion_id == Companion.id).order_by(
            func.coalesce(popularity.c.n, literal(0)).desc(), Companion.created_at.desc(), Companion.id.desc()
        )
    elif sort == "name":
        query = query.order_by(func.lower(Companion.name), Companion.id)
    else:
        query = query.order_by(Companion.created_at.desc(), Companion.id.desc())
    # The total rides on every row as an uncorrelated scalar subquery, which SQLite and PostgreSQL evaluate
    # once per statement: one round trip instead of two. (A COUNT(*) OVER () window would instead build every
    # matching row, lesson counts included, before the LIMIT.) correlate(None) keeps it from being correlated
    # to the outer `companions`.
    total_column = _count(filters).correlate(None).scalar_subquery()
    result = conn.execute(query.add_columns(total_column).offset(offset).limit(limit)).all()
    if result:
        total = result[0][-1]
    else:  # a page past the end has no row to carry the total
        total = conn.scalar(_count(filters))
    return _records(result), int(total or 0)


def _by_ids(query: Select[Any], ids: Any, archived: bool) -> Select[Any]:
    # `ids`: a list of ids, or an expanding bind parameter that stands for one.
    query = query.where(Companion.id.in_(ids))
    return query if archived else query.where(IN_LIBRARY)


# Built once, with and without archived companions: a statement reused keeps its compiled form in the cache.
_RECORDS_BY_IDS = {
    archived: _by_ids(_records_query(), bindparam("ids", expanding=True), archived) for archived in (False, True)
}


def records_by_ids(conn: Connection, ids: Sequence[int], *, archived: bool = False) -> dict[int, CompanionRecord]:
    """The companions with these ids as everyone sees them (a read unit); archived ones only with `archived`."""
    if not ids:
        return {}
    return {r.id: r for r in _records(conn.execute(_RECORDS_BY_IDS[archived], {"ids": list(ids)}).all())}


@lru_cache(maxsize=128)
def _bookmarked_among(count: int) -> Select[Any]:
    # Built once for each number of ids (a page holds at most 100), with one parameter for each: every list
    # request runs it, and an expanding IN would render its SQL anew on every run, which costs as much again as
    # the rest of the statement.
    ids: list[Any] = [bindparam(f"id_{i}") for i in range(count)]
    return select(Bookmark.companion_id).where(
        Bookmark.learner_id == bindparam("learner_id"), Bookmark.companion_id.in_(ids)
    )


def bookmarked_among(conn: Connection, learner_id: int, ids: Sequence[int]) -> set[int]:
    """Which of these companions the learner bookmarked (a read unit)."""
    if not ids:
        return set()
    params: dict[str, int] = {f"id_{i}": companion_id for i, companion_id in enumerate(ids)}
    params["learner_id"] = learner_id
    return set(conn.scalars(_bookmarked_among(len(ids)), params))


def viewed(conn: Connection, viewer_id: int, records: Sequence[CompanionRecord]) -> list[CompanionRow]:
    """The records with the viewer's bookmark flags (a read unit)."""
    marked = bookmarked_among(conn, viewer_id, [r.id for r in records])
    return [CompanionRow.of(r, r.id in marked) for r in records]


async def rows_by_ids(
    session: AsyncSession, viewer_id: int, ids: Sequence[int], *, archived: bool = False
) -> dict[int, CompanionRow]:
    """The companions with these ids as the viewer sees them, inside a transaction; archived ones with `archived`."""
    if not ids:
        return {}
    result = (await session.execute(_by_ids(_rows_query(viewer_id), ids, archived))).all()
    return {row.companion.id: row for row in _rows(result)}


async def one_row(
    session: AsyncSession, viewer_id: int, companion_id: int, *, archived: bool = False
) -> CompanionRow | None:
    return (await rows_by_ids(session, viewer_id, [companion_id], archived=archived)).get(companion_id)


async def bookmarked_rows(session: AsyncSession, learner_id: int, limit: int) -> list[CompanionRow]:
    query = (
        _rows_query(learner_id)
        .where(Bookmark.learner_id == learner_id, IN_LIBRARY)
        .order_by(Bookmark.created_at.desc(), Companion.id.desc())
        .limit(limit)
    )
    return _rows((await session.execute(query)).all())


async def count_by_author(session: AsyncSession, author_id: int) -> int:
    """The author's companions in the library: what the plan's companion limit counts."""
    query = select(func.count()).select_from(Companion).where(Companion.author_id == author_id, IN_LIBRARY)
    return int(await session.scalar(query) or 0)


async def get(session: AsyncSession, companion_id: int) -> Companion | None:
    """The companion, archived or not."""
    return await session.get(Companion, companion_id)


async def lock(session: AsyncSession, companion_id: int, *, shared: bool = False) -> Companion | None:
    """The companion, locked for the rest of the transaction (`shared`: against changes, not other readers).

    Starting a lesson holds the shared lock and deleting the exclusive one, so a delete either sees the new
    lesson (and archives) or the start sees the companion gone.
    """
    query = select(Companion).where(Companion.id == companion_id).with_for_update(read=shared)
    return (await session.execute(query)).scalar_one_or_none()


async def has_lessons(session: AsyncSession, companion_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Lesson.companion_id == companion_id))))


async def archive(session: AsyncSession, companion: Companion, at: datetime) -> None:
    companion.archived_at = at
    await session.flush()


async def erase(session: AsyncSession, companion: Companion) -> None:
    """Delete the row; its bookmarks go with it (ON DELETE CASCADE)."""
    await session.delete(companion)
    await session.flush()


async def create(session: AsyncSession, author_id: int, fields: Mapping[str, Any]) -> Companion:
    """Insert a companion by this author with these columns (name, subject, topic, voice, style, teaching,
    duration)."""
    companion = Companion(author_id=author_id, **fields)
    session.add(companion)
    await session.flush()
    return companion


async def change(session: AsyncSession, companion: Companion, changes: Mapping[str, Any]) -> None:
    """Write these column values onto the companion (its `updated_at` moves on)."""
    for key, value in changes.items():
        setattr(companion, key, value)
    await session.flush()


async def by_author(session: AsyncSession, author_id: int) -> list[Companion]:
    """Every companion the author built, archived ones included."""
    query = select(Companion).where(Companion.author_id == author_id)
    return list((await session.execute(query)).scalars())
