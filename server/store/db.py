"""The database handle: one async engine per app, transactions, and schema migrations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Threads (and pooled connections) that run SQLite read units: SQLite steps without the GIL, so a few let reads
# overlap with the event loop, and more would only queue for the two cores of a small school server.
SQLITE_READ_THREADS = 4

T = TypeVar("T")


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _prepare_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, enforced foreign keys, and explicit BEGINs.

    pysqlite's own transaction handling defers BEGIN until the first write, which lets two requests read the
    same count before either writes. We emit BEGIN ourselves, and BEGIN IMMEDIATE on the write engine, so a
    limit check and its insert hold SQLite's write lock together.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
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
        path = url.split("///", 1)[-1] if self.is_sqlite else ""
        on_disk = bool(path) and path != ":memory:" and "mode=memory" not in path
        if self.is_sqlite:
            if on_disk:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        self.engine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _prepare_sqlite(self.engine.sync_engine)
            write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            write_engine = self.engine
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(write_engine, expire_on_commit=False)
        self._shared_read: ContextVar[AsyncSession | None] = ContextVar(f"shared_read_{id(self)}", default=None)
        # aiosqlite hands every cursor call to its connection's thread and back (about four hops a statement,
        # each a thread wake-up and an event-loop wake-up); a read unit on SQLite instead runs on a plain
        # pysqlite connection in one of these threads: one hop for the whole unit.
        self._sync_reader: Engine | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        if self.is_sqlite and on_disk:
            sync_url = make_url(url).set(drivername="sqlite+pysqlite")
            self._sync_reader = create_engine(
                sync_url,
                echo=echo,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=SQLITE_READ_THREADS,
                max_overflow=0,
                pool_recycle=1800,
            )
            _prepare_sqlite(self._sync_reader)
            self._read_threads = ThreadPoolExecutor(SQLITE_READ_THREADS, thread_name_prefix="sqlite-read")
        self._committed_writes = 0
        self.shared_cache = SharedReadCache(self)

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

    async def read_unit(self, work: Callable[[Connection], T]) -> T:
        """Run `work`, a request's reads as one synchronous function of a Core connection, in one transaction.

        On SQLite it runs in a reading thread (one hop instead of about four a statement); elsewhere in the
        task's read session, joining `shared_reads()` when inside one. `work` must only read.
        """
        if self._sync_reader is None:
            async with self.read() as session:
                return await session.run_sync(lambda sync_session: work(sync_session.connection()))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._run_read_unit, work)

    def _run_read_unit(self, work: Callable[[Connection], T]) -> T:
        assert self._sync_reader is not None
        with self._sync_reader.connect() as conn:
            try:
                return work(conn)
            finally:
                conn.rollback()

    @property
    def committed_writes(self) -> int:
        """How many write transactions this process has committed: a cached read is good only while it holds."""
        return self._committed_writes

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction that commits on success and rolls back on any error."""
        try:
            async with self._writer() as session, session.begin():
                yield session
        finally:
            # Also after a failure: a commit that raised may still have reached the database.
            self._committed_writes += 1

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
        if self._read_threads is not None:
            self._read_threads.shutdown(wait=True)
        if self._sync_reader is not None:
            self._sync_reader.dispose()
        await self.engine.dispose()


class SharedReadCache:
    """Read results that every viewer shares, each kept a short time and dropped once this process writes.

    Another process's writes show after at most the entry's time to live; this process's own show at once.
    """

    MAX_ENTRIES = 256

    def __init__(self, db: Database) -> None:
        self._db = db
        self._entries: dict[Hashable, tuple[float, int, Any]] = {}

    async def get(self, key: Hashable, ttl: float, compute: Callable[[], Any]) -> Any:
        """The value cached under `key`, else `await compute()` (an async callable), cached `ttl` seconds."""
        now = time.monotonic()
        # Taken before reading: a write that commits while `compute` runs leaves the new entry already stale.
        writes = self._db.committed_writes
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now and entry[1] == writes:
            return entry[2]
        value = await compute()
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now and e[1] == writes}
            while len(self._entries) >= self.MAX_ENTRIES:  # all live: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + ttl, writes, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
