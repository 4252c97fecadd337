"""Migrations: the schema Alembic builds is the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.state import get_state
from server.store.models import Base


async def test_migrated_schema_matches_models(app):
    db = get_state(app).db
    current, head = await db.schema_status()
    assert current == head
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []


async def test_upgrade_is_idempotent(app):
    db = get_state(app).db
    await db.upgrade()
    current, head = await db.schema_status()
    assert current == head
