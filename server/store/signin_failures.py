"""Queries on failed sign-in counts, kept in the database so every server process sees the same locks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import SignInFailure


async def locked_until(session: AsyncSession, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest end of a lock still running on any of these keys."""
    query = select(func.max(SignInFailure.locked_until)).where(
        SignInFailure.key.in_(keys), SignInFailure.locked_until > now
    )
    value: datetime | None = await session.scalar(query)
    return value


async def lock_rows(session: AsyncSession, keys: Sequence[str], now: datetime) -> list[SignInFailure]:
    """The rows for these keys (created when missing), row-locked to the end of the transaction.

    PostgreSQL: the insert waits on a concurrent insert of the same key and the SELECT ... FOR UPDATE on its
    update, so two processes counting one key queue up; keys are taken in sorted order so two requests can never
    hold one key each while waiting for the other's. SQLite: the write transaction already holds the file lock.
    """
    ordered = sorted(set(keys))
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    query = select(SignInFailure).where(SignInFailure.key.in_(ordered)).order_by(SignInFailure.key).with_for_update()
    rows: list[SignInFailure] = []
    # A second round only when `remove_stale` deleted a row between our insert and our lock.
    for _ in range(2):
        values = [{"key": key, "failures": 0, "window_start": now, "lockouts": 0} for key in ordered]
        insert = dialect.insert(SignInFailure).values(values).on_conflict_do_nothing(index_elements=["key"])
        await session.execute(insert)
        rows = list((await session.execute(query.execution_options(populate_existing=True))).scalars())
        if len(rows) == len(ordered):
            break
    return rows


async def remove(session: AsyncSession, key: str) -> None:
    await session.execute(delete(SignInFailure).where(SignInFailure.key == key))


async def remove_stale(session: AsyncSession, window_before: datetime, lock_before: datetime) -> None:
    """Forget keys whose window began before `window_before` and whose last lock ended before `lock_before`.

    Rows another transaction holds are skipped (PostgreSQL's SKIP LOCKED), so this never waits on a sign-in
    that is counting, and so can never deadlock with one.
    """
    stale = (
        select(SignInFailure.key)
        .where(
            SignInFailure.window_start < window_before,
            or_(SignInFailure.locked_until.is_(None), SignInFailure.locked_until < lock_before),
        )
        .with_for_update(skip_locked=True)
    )
    await session.execute(delete(SignInFailure).where(SignInFailure.key.in_(stale)))


async def save(
    session: AsyncSession,
    row: SignInFailure,
    *,
    failures: int,
    window_start: datetime,
    lockouts: int,
    locked_until: datetime | None,
) -> None:
    """Write a (locked) key's new count."""
    row.failures, row.window_start, row.lockouts, row.locked_until = failures, window_start, lockouts, locked_until
    await session.flush()
