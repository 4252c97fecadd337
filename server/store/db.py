"""The database handle: one async engine per app, transactions, and schema migrations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers, enforced foreign keys, and explicit BEGINs.

    pysqlite's own transaction handling defers BEGIN until the first write, which lets two requests read the
    same count before either writes. We emit BEGIN ourselves, and BEGIN IMMEDIATE on the write engine, so a
    limit check and its insert hold SQLite's write lock together.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def migrate(connection: Connection, work: Callable[[Connection], None]) -> None:
    """Run `work` (Alembic) in one transaction on a connection that has not begun one yet.

    On SQLite, foreign keys are off for the duration: a migration that rebuilds a table drops the old one, and
    with them enforced that drop cascades deletes onto every table referring to it. The pragma is ignored
    inside a transaction, so it is set first, and every reference is checked before the commit.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _pragma(connection, "PRAGMA foreign_keys=OFF")
        # Two processes starting at once must not both read the old revision before either writes.
        connection.execution_options(sqlite_immediate=True)
    try:
        with connection.begin():
            work(connection)
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left rows referring to missing rows: {broken[:5]}")
    finally:
        if sqlite:
            _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, sql: str) -> None:
    # On the DB-API connection: through SQLAlchemy the statement would first begin a transaction.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


class Database:
    """An async engine and its session factories; `read()` and `write()` each give one transaction."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # No pre-ping (it costs a round trip per checkout); connections are recycled before servers drop them.
        kwargs: dict[str, Any] = {"echo": echo, "pool_recycle": 1800}
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        self.engine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _prepare_sqlite(self.engine)
            write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            write_engine = self.engine
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(write_engine, expire_on_commit=False)
        self._shared_read: ContextVar[AsyncSession | None] = ContextVar(f"shared_read_{id(self)}", default=None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (rolled back at the end); inside `shared_reads()` it joins the shared one."""
        shared = self._shared_read.get()
        if shared is not None:
            yield shared
            return
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def shared_reads(self) -> AsyncIterator[None]:
        """Let every `read()` in this task share one transaction: one BEGIN for a whole read-only request.

        Only for units of work that do not write: a read after a write in the same scope would see the
        snapshot from before it.
        """
        if self._shared_read.get() is not None:
            yield
            return
        async with self._reader() as session:
            token = self._shared_read.set(session)
            try:
                yield
            finally:
                self._shared_read.reset(token)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction that commits on success and rolls back on any error."""
        async with self._writer() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration (or to `revision`)."""
        async with self.engine.connect() as conn:
            await conn.run_sync(lambda sync: migrate(sync, lambda c: command.upgrade(_alembic_config(c), revision)))

    async def downgrade(self, revision: str) -> None:
        async with self.engine.connect() as conn:
            await conn.run_sync(lambda sync: migrate(sync, lambda c: command.downgrade(_alembic_config(c), revision)))

    async def schema_status(self) -> tuple[str | None, str | None]:
        """(current revision, newest revision) of the schema."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        async with self.engine.connect() as conn:
            current = await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        return current, head

    async def close(self) -> None:
        await self.engine.dispose()
