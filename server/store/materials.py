"""Queries on a companion's materials and their passages, and the full-text search over them.

The search is the database's own: SQLite's FTS5 table `material_passages_fts` (ranked by bm25) or PostgreSQL's
generated `search_vector` column (ranked by ts_rank), both made by migration 0008. Passages reach and leave the
index with their rows (triggers on SQLite, a generated column on PostgreSQL), so adding or deleting a material
here is one transaction for the file, its passages and the index alike. The raw SQL of the search lives here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Material, MaterialPassage


@dataclass(frozen=True, slots=True)
class MaterialRecord:
    """A material as lists show it (never its bytes)."""

    id: int
    companion_id: int
    filename: str
    media_type: str
    size_bytes: int
    allow_download: bool
    passages_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewPassage:
    position: int
    text: str
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage the search found, with its material's name; `rank`: lower is better on both databases."""

    passage_id: int
    material_id: int
    filename: str
    position: int
    page: int | None
    heading: str | None
    text: str
    rank: float


_RECORD_COLUMNS = (
    Material.id,
    Material.companion_id,
    Material.filename,
    Material.media_type,
    Material.size_bytes,
    Material.allow_download,
    Material.passages_count,
    Material.created_at,
)


def _record(row: Any) -> MaterialRecord:
    return MaterialRecord(*row)


async def add(
    session: AsyncSession,
    *,
    companion_id: int,
    filename: str,
    media_type: str,
    content: bytes,
    sha256: str,
    allow_download: bool,
    passages: Sequence[NewPassage],
    created_at: datetime,
) -> MaterialRecord:
    """The material and all its passages (indexed as they are written), in the caller's transaction."""
    material_id = await session.scalar(
        insert(Material)
        .values(
            companion_id=companion_id,
            filename=filename,
            media_type=media_type,
            size_bytes=len(content),
            sha256=sha256,
            allow_download=allow_download,
            content=content,
            passages_count=len(passages),
            created_at=created_at,
        )
        .returning(Material.id)
    )
    assert material_id is not None
    if passages:
        await session.execute(
            insert(MaterialPassage),
            [
                {
                    "material_id": material_id,
                    "position": p.position,
                    "page": p.page,
                    "heading": p.heading,
                    "text": p.text,
                }
                for p in passages
            ],
        )
    return MaterialRecord(
        material_id, companion_id, filename, media_type, len(content), allow_download, len(passages), created_at
    )


async def for_companion(session: AsyncSession, companion_id: int) -> list[MaterialRecord]:
    query = select(*_RECORD_COLUMNS).where(Material.companion_id == companion_id).order_by(Material.id)
    return [_record(row) for row in (await session.execute(query)).all()]


async def used_bytes(session: AsyncSession, companion_id: int) -> int:
    query = select(func.coalesce(func.sum(Material.size_bytes), 0)).where(Material.companion_id == companion_id)
    return int(await session.scalar(query) or 0)


async def has_file(session: AsyncSession, companion_id: int, sha256: str) -> bool:
    query = select(Material.id).where(Material.companion_id == companion_id, Material.sha256 == sha256).limit(1)
    return await session.scalar(query) is not None


async def get(session: AsyncSession, material_id: int) -> MaterialRecord | None:
    row = (await session.execute(select(*_RECORD_COLUMNS).where(Material.id == material_id))).first()
    return None if row is None else _record(row)


async def content(session: AsyncSession, material_id: int) -> bytes | None:
    found: bytes | None = await session.scalar(select(Material.content).where(Material.id == material_id))
    return found


async def set_allow_download(session: AsyncSession, material_id: int, allow: bool) -> None:
    await session.execute(update(Material).where(Material.id == material_id).values(allow_download=allow))


async def delete_material(session: AsyncSession, material_id: int) -> None:
    """The material, its passages and their index entries, in the caller's transaction.

    The passages go first and by name rather than by the foreign key's cascade, so their index entries go with
    them whatever the connection's foreign-key setting (the cascade from a companion relies on it being on).
    """
    await session.execute(delete(MaterialPassage).where(MaterialPassage.material_id == material_id))
    await session.execute(delete(Material).where(Material.id == material_id))


def _sqlite_match(terms: Sequence[str]) -> str:
    # Each term quoted (FTS5 then reads it as a plain string, whatever its letters), any of them matching.
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _postgres_query(terms: Sequence[str]) -> str:
    # The terms are letters and digits only (the domain's words), so they are plain lexemes for to_tsquery.
    return " | ".join(terms)


_SQLITE_SEARCH = """
SELECT p.id, p.material_id, m.filename, p.position, p.page, p.heading, p.text, bm25(material_passages_fts) AS rank
FROM material_passages_fts
JOIN material_passages p ON p.id = material_passages_fts.rowid
JOIN materials m ON m.id = p.material_id
WHERE material_passages_fts MATCH :match AND m.companion_id = {companion}
ORDER BY rank, p.material_id, p.position
LIMIT :limit
"""

# ts_rank is higher for better matches; negated so that lower is better, as bm25 is.
_POSTGRES_SEARCH = """
SELECT p.id, p.material_id, m.filename, p.position, p.page, p.heading, p.text,
       -ts_rank(p.search_vector, q.query) AS rank
FROM material_passages p
JOIN materials m ON m.id = p.material_id
CROSS JOIN (SELECT to_tsquery('english', :match) AS query) q
WHERE p.search_vector @@ q.query AND m.companion_id = {companion}
ORDER BY rank, p.material_id, p.position
LIMIT :limit
"""


def search(
    conn: Connection,
    terms: Sequence[str],
    limit: int,
    *,
    companion_id: int | None = None,
    lesson_id: int | None = None,
) -> list[Hit]:
    """The best `limit` passages of a companion's materials (by its id, or by a lesson of it) for any of `terms`.

    `terms`: words of letters and digits (the domain makes them from what the learner said).
    """
    if not terms or limit < 1 or (companion_id is None) == (lesson_id is None):
        return []
    params: dict[str, Any] = {"limit": limit}
    if companion_id is not None:
        companion = ":companion_id"
        params["companion_id"] = companion_id
    else:
        companion = "(SELECT companion_id FROM lessons WHERE id = :lesson_id)"
        params["lesson_id"] = lesson_id
    if conn.dialect.name == "sqlite":
        sql, params["match"] = _SQLITE_SEARCH.format(companion=companion), _sqlite_match(terms)
    else:
        sql, params["match"] = _POSTGRES_SEARCH.format(companion=companion), _postgres_query(terms)
    rows = conn.execute(text(sql), params).all()
    return [Hit(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], r[5], r[6], float(r[7])) for r in rows]


def verify_index(conn: Connection) -> None:
    """Raise if SQLite's full-text index and the passages differ (FTS5's integrity check against its content
    table); PostgreSQL's generated column cannot differ."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            text("INSERT INTO material_passages_fts(material_passages_fts, rank) VALUES ('integrity-check', 1)")
        )
