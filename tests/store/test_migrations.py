"""Migrations: the schema Alembic builds is the models' schema, and upgrading keeps every row (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from server.settings import Settings
from server.state import get_state
from server.store.db import Database
from server.store.models import Base, declared_in_models


async def test_migrated_schema_matches_models(app):
    db = get_state(app).db
    current, head = await db.schema_status()
    assert current == head
    async with db.engine.connect() as conn:
        # Leaving out the materials' full-text index (SQLite's FTS5 tables, PostgreSQL's tsvector column and its
        # GIN index), which migration 0008 makes and the database keeps: the models do not declare it.
        opts = {"include_object": declared_in_models}
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts=opts), Base.metadata)
        )
    assert diff == []


async def test_upgrade_is_idempotent(app):
    db = get_state(app).db
    await db.upgrade()
    current, head = await db.schema_status()
    assert current == head


# A school's database as 0003 left it: two learners, a companion of each, lessons with transcripts, bookmarks.
ROWS_0003 = {
    "users": [
        "INSERT INTO users (id, email, name, plan, is_admin, created_at) VALUES (1, 'ann@s.test', 'Ann', 'free', "
        "false, :at)",
        "INSERT INTO users (id, email, name, plan, is_admin, created_at) VALUES (2, 'bob@s.test', 'Bob', 'pro', "
        "false, :at)",
    ],
    "companions": [
        "INSERT INTO companions (id, name, subject, topic, voice, style, duration, author_id, created_at, updated_at) "
        "VALUES (10, 'Neura', 'science', 'Neural networks', 'female', 'casual', 15, 1, :at, :at)",
        "INSERT INTO companions (id, name, subject, topic, voice, style, duration, author_id, created_at, updated_at) "
        "VALUES (11, 'Count', 'maths', 'Fractions', 'male', 'formal', 10, 2, :at, :at)",
    ],
    "lessons": [
        "INSERT INTO lessons (id, companion_id, learner_id, started_at, ended_at, length_seconds, end_reason) "
        "VALUES (100, 10, 2, :at, :at, 0, 'customer-ended-call')",
        "INSERT INTO lessons (id, companion_id, learner_id, started_at) VALUES (101, 11, 1, :at)",
        "INSERT INTO lessons (id, companion_id, learner_id, started_at, external_call_id) "
        "VALUES (102, 10, 1, :at, 'call-1')",
    ],
    "transcript_entries": [
        "INSERT INTO transcript_entries (id, lesson_id, position, role, text, at) "
        "VALUES (1, 100, 1, 'user', 'hi', :at)",
        "INSERT INTO transcript_entries (id, lesson_id, position, role, text, at, external_id) "
        "VALUES (2, 101, 1, 'assistant', 'hello', :at, 'm-1')",
        "INSERT INTO transcript_entries (id, lesson_id, position, role, text, at) VALUES (3, 102, 1, 'user', 'x', :at)",
    ],
    "bookmarks": [
        "INSERT INTO bookmarks (learner_id, companion_id, created_at) VALUES (1, 11, :at)",
        "INSERT INTO bookmarks (learner_id, companion_id, created_at) VALUES (2, 10, :at)",
    ],
}


async def _counts(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in ROWS_0003}


async def _database_at_0003(settings: Settings) -> Database:
    db = Database(settings.database_url)
    await db.upgrade("0003")
    async with db.engine.begin() as conn:
        for statements in ROWS_0003.values():
            for sql in statements:
                await conn.execute(text(sql), {"at": datetime(2026, 11, 1, 9, 30, tzinfo=UTC)})
    return db


async def test_upgrade_from_0003_keeps_every_row(settings):
    db = await _database_at_0003(settings)
    try:
        await db.upgrade()
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
        async with db.engine.connect() as conn:
            snapshots = (
                await conn.execute(
                    text("SELECT id, companion_name, companion_subject, companion_topic FROM lessons ORDER BY id")
                )
            ).all()
        assert [tuple(r) for r in snapshots] == [
            (100, "Neura", "science", "Neural networks"),
            (101, "Count", "maths", "Fractions"),
            (102, "Neura", "science", "Neural networks"),
        ]
        # Foreign keys are enforced again, and a companion's row going no longer takes its lessons along.
        async with db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM companions WHERE id = 10"))
        async with db.engine.connect() as conn:
            kept = (await conn.execute(text("SELECT id, companion_id FROM lessons ORDER BY id"))).all()
            bookmarks = (await conn.execute(text("SELECT companion_id FROM bookmarks"))).scalars().all()
        assert [tuple(r) for r in kept] == [(100, None), (101, 11), (102, None)]
        assert bookmarks == [11]
        assert (await _counts(db))["transcript_entries"] == 3
    finally:
        await db.close()


async def test_downgrade_to_0003_and_back_keeps_every_row(settings):
    db = await _database_at_0003(settings)
    try:
        await db.upgrade("0004")
        await db.downgrade("0003")
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
        await db.upgrade()
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
        current, head = await db.schema_status()
        assert current == head
    finally:
        await db.close()


async def test_0006_makes_admins_administrators_and_round_trips(settings):
    """is_admin becomes role; rebuilding users and companions loses no lesson, bookmark or voice."""
    db = await _database_at_0003(settings)
    try:
        await db.upgrade("0005")
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE users SET is_admin = true WHERE id = 2"))
        await db.upgrade("0006")
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
        async with db.engine.connect() as conn:
            roles = (await conn.execute(text("SELECT id, role FROM users ORDER BY id"))).all()
            voices = (await conn.execute(text("SELECT voice FROM companions ORDER BY id"))).scalars().all()
        assert [tuple(r) for r in roles] == [(1, "learner"), (2, "admin")]
        assert voices == ["female", "male"]
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE companions SET voice = 'en_US-joe-medium' WHERE id = 10"))
        await db.downgrade("0005")
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
        async with db.engine.connect() as conn:
            admins = (await conn.execute(text("SELECT id FROM users WHERE is_admin ORDER BY id"))).scalars().all()
            voices = (await conn.execute(text("SELECT voice FROM companions ORDER BY id"))).scalars().all()
        assert admins == [2]
        assert voices == ["male", "male"]
        await db.upgrade()
        assert await _counts(db) == {t: len(rows) for t, rows in ROWS_0003.items()}
    finally:
        await db.close()
