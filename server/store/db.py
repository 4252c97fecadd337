"""The database handle: one async engine per app, transactions, and schema migrations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
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
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Threads (each with its own connection) that run SQLite read units: SQLite steps without the GIL, so a few let
# reads overlap with the event loop, and more would only queue for the two cores of a small school server.
SQLITE_READ_THREADS = 4
# How long a quick read unit, which runs on the event loop's thread, lets SQLite wait for a lock before it hands
# the unit to a reading thread: not at all, since every lesson's audio (40 ms packets) waits with the loop.
QUICK_READ_BUSY_MS = 0

T = TypeVar("T")


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _prepare_sqlite(engine: Engine, *, read_only: bool = False) -> None:
    """WAL for concurrent readers, enforced foreign keys, and explicit BEGINs.

    pysqlite's own transaction handling defers BEGIN until the first write, which lets two requests read the
    same count before either writes. We emit BEGIN ourselves, and BEGIN IMMEDIATE on the write engine, so a
    limit check and its insert hold SQLite's write lock together. A `read_only` engine (read units) refuses
    writes outright and hands its BEGIN straight to the driver: through SQLAlchemy's execution that BEGIN cost
    as much as the unit's own query.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    if read_only:

        @event.listens_for(engine, "begin")
        def _on_read_begin(conn: Connection) -> None:
            driver: Any = conn.connection.dbapi_connection
            driver.execute("BEGIN")

        return

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
        self._shared_read: ContextVar[_SharedRead | None] = ContextVar(f"shared_read_{id(self)}", default=None)
        # aiosqlite hands every cursor call to its connection's thread and back (about four hops a statement,
        # each a thread wake-up and an event-loop wake-up); a read unit on SQLite instead runs on a plain
        # pysqlite connection in one of these threads (one hop for the whole unit), or a quick one on the
        # event loop's own thread (no hop at all).
        self._sync_reader: Engine | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        # Each thread that runs read units keeps one connection open: a checkout from a pool, with its reset,
        # cost more than a primary-key lookup. Every one of them is closed with the database.
        self._thread_reader = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        if self.is_sqlite and on_disk:
            sync_url = make_url(url).set(drivername="sqlite+pysqlite")
            self._sync_reader = create_engine(
                sync_url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=NullPool
            )
            _prepare_sqlite(self._sync_reader, read_only=True)
            self._read_threads = ThreadPoolExecutor(SQLITE_READ_THREADS, thread_name_prefix="sqlite-read")
        self._committed_writes = 0
        self.shared_cache = SharedReadCache(self)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (rolled back at the end); inside `shared_reads()` it joins the shared one."""
        shared = self._shared_read.get()
        if shared is not None:
            if shared.session is None:
                shared.session = self._reader()
            yield shared.session
            return
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def shared_reads(self) -> AsyncIterator[None]:
        """Let every `read()` in this task share one transaction: one BEGIN for a whole read-only request.

        Only for units of work that do not write: a read after a write in the same scope would see the
        snapshot from before it. The session is opened by the first `read()`, so a request whose reads are all
        SQLite read units never builds one.
        """
        if self._shared_read.get() is not None:
            yield
            return
        shared = _SharedRead()
        token = self._shared_read.set(shared)
        try:
            yield
        finally:
            self._shared_read.reset(token)
            if shared.session is not None:
                await shared.session.close()

    async def read_unit(self, work: Callable[[Connection], T], *, quick: bool = False) -> T:
        """Run `work`, a request's reads as one synchronous function of a Core connection, in one transaction.

        On SQLite it runs in a reading thread (one hop instead of about four a statement), or, when `quick` (a
        few indexed lookups, no scan), at once on the event loop's thread: SQLite answers those in tens of
        microseconds, less than the hop to a thread and back costs, and a busy machine makes the hop dearer
        still. Elsewhere it runs in the task's read session, joining `shared_reads()` when inside one. `work`
        must only read (on SQLite its connection refuses writes).
        """
        if self._sync_reader is None:
            async with self.read() as session:
                return await session.run_sync(lambda sync_session: work(sync_session.connection()))
        if quick:
            try:
                return self._run_read_unit(work, quick=True)
            except OperationalError as exc:
                # In WAL mode a reader waits only in rare moments (a checkpoint resetting the log, recovery);
                # the event loop must not wait with it, so the unit goes to a reading thread instead.
                if not _sqlite_busy(exc):
                    raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._run_read_unit, work)

    def _run_read_unit(self, work: Callable[[Connection], T], *, quick: bool = False) -> T:
        conn = self._thread_connection(quick)
        try:
            return work(conn)
        finally:
            conn.rollback()

    def _thread_connection(self, quick: bool) -> Connection:
        conn: Connection | None = getattr(self._thread_reader, "conn", None)
        if conn is None:
            assert self._sync_reader is not None
            conn = self._sync_reader.connect()
            if quick:  # the event loop's thread, which runs only quick units
                driver: Any = conn.connection.dbapi_connection
                driver.execute(f"PRAGMA busy_timeout={QUICK_READ_BUSY_MS}")
            with self._readers_lock:
                self._readers.append(conn)
            self._thread_reader.conn = conn
        return conn

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
        with self._readers_lock:
            readers, self._readers = self._readers, []
            # A thread that reads again after this (a test reopening the database) opens a fresh connection.
            self._thread_reader = threading.local()
        for conn in readers:
            conn.close()
        if self._sync_reader is not None:
            self._sync_reader.dispose()
        await self.engine.dispose()


_FAILED = object()


class _SharedRead:
    """The one read session of a `shared_reads()` scope, opened when it is first needed."""

    __slots__ = ("session",)

    def __init__(self) -> None:
        self.session: AsyncSession | None = None


def _sqlite_busy(exc: OperationalError) -> bool:
    # The extended codes (SQLITE_BUSY_RECOVERY, ...) carry the primary code in their low byte.
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None) if isinstance(orig, sqlite3.OperationalError) else None
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SharedReadCache:
    """Read results that every viewer shares, each kept a short time and dropped once this process writes.

    Another process's writes show after at most the entry's time to live; this process's own show at once.
    Requests that miss the same entry together share one read of it: when a busy library page's entry runs
    out, every request in flight would otherwise run the page's query at once, and the answers of all of them
    would wait behind it.
    """

    MAX_ENTRIES = 256

    def __init__(self, db: Database) -> None:
        self._db = db
        self._entries: dict[Hashable, tuple[float, int, Any]] = {}
        self._reading: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, ttl: float, compute: Callable[[], Any]) -> Any:
        """The value cached under `key`, else `await compute()` (an async callable), cached `ttl` seconds."""
        now = time.monotonic()
        # Taken before reading: a write that commits while `compute` runs leaves the new entry already stale.
        writes = self._db.committed_writes
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now and entry[1] == writes:
            return entry[2]
        reading = self._reading.get(key)
        # Only a read begun after this process's latest write will do: one begun before may not show it.
        if reading is not None and reading[0] == writes:
            value = await asyncio.shield(reading[1])
            return await compute() if value is _FAILED else value
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reading[key] = (writes, done)
        try:
            value = await compute()
        except BaseException:
            done.set_result(_FAILED)  # those waiting read for themselves
            raise
        else:
            done.set_result(value)
        finally:
            if self._reading.get(key, (0, None))[1] is done:
                del self._reading[key]
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now and e[1] == writes}
            while len(self._entries) >= self.MAX_ENTRIES:  # all live: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + ttl, writes, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
