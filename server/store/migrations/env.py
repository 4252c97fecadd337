"""Alembic environment: runs on the connection the app hands over, or builds one from the settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from server.store.models import Base, declared_in_models

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # The materials' full-text index is the database's own, made by 0008 and not declared in the models.
        include_object=declared_in_models,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_settings() -> None:
    from server.settings import load_settings
    from server.store.db import Database, migrate

    async def go() -> None:
        db = Database(load_settings().database_url)
        async with db.engine.connect() as conn:
            await conn.run_sync(lambda sync: migrate(sync, _run))
        await db.close()

    asyncio.run(go())


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    _run_from_settings()
