"""Read units: they only read, see every committed write at once, and a quick one never holds the event loop."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from server.state import get_state
from server.store.models import User
from tests.conftest import register


def _users(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(User)) or 0)


async def test_a_read_unit_sees_each_write_as_soon_as_it_commits(app, client):
    db = get_state(app).db
    for quick in (False, True):
        assert await db.read_unit(_users, quick=quick) == 0
    await register(client)
    for quick in (False, True):
        assert await db.read_unit(_users, quick=quick) == 1
    await register(client, email="bob@school.test", name="Bob")
    for quick in (True, False):  # the connections kept open between units hold no old snapshot
        assert await db.read_unit(_users, quick=quick) == 2


async def test_a_read_unit_changes_nothing(app, client):
    await register(client)
    db = get_state(app).db

    def delete_everyone(conn: Connection) -> None:
        conn.execute(text("DELETE FROM users"))

    for quick in (False, True):
        if db.is_sqlite:
            # SQLite's reading connections refuse any write outright.
            with pytest.raises(OperationalError, match="readonly"):
                await db.read_unit(delete_everyone, quick=quick)
        else:
            await db.read_unit(delete_everyone, quick=quick)  # rolled back with the read session
    assert await db.read_unit(_users) == 1


def _busy() -> OperationalError:
    cause = sqlite3.OperationalError("database is locked")
    cause.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    return OperationalError("SELECT 1", {}, cause)


async def test_a_quick_unit_that_finds_sqlite_busy_goes_to_a_reading_thread(app, client):
    """The event loop must not wait on SQLite's lock: the unit runs again where waiting stalls no lesson."""
    db = get_state(app).db
    if not db.is_sqlite:
        pytest.skip("only SQLite runs quick units on the event loop")
    await register(client)
    loop_thread = threading.get_ident()
    ran_in: list[int] = []

    def once_busy(conn: Connection) -> int:
        ran_in.append(threading.get_ident())
        if len(ran_in) == 1:
            raise _busy()
        return _users(conn)

    assert await db.read_unit(once_busy, quick=True) == 1
    assert ran_in[0] == loop_thread and ran_in[1] != loop_thread

    def broken(conn: Connection) -> None:
        ran_in.append(threading.get_ident())
        conn.execute(text("SELECT * FROM no_such_table"))

    ran_in.clear()
    with pytest.raises(OperationalError, match="no_such_table"):
        await db.read_unit(broken, quick=True)
    assert ran_in == [loop_thread]  # any other error is the caller's, not retried
