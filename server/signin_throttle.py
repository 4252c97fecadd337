"""The brake on guessing passwords: failed sign-ins counted per account and per client address, and locks that grow.

The counts are rows in our database, so every server process sees the same ones. Each key counts its failures in
a fixed window (`auth.throttle.window_seconds`); reaching the key's limit locks it for `lock_seconds`. A failure
after a lock ends, still inside the window, locks it again for twice as long, up to `max_lock_seconds`; the
doubling starts over once a whole window has passed since the last lock. While a key is locked, sign-in answers
429 without looking at the password at all, so the right password is refused too.

A successful sign-in clears the account's count but not the address's: otherwise one attacker could sign in to
an account of their own now and then to keep guessing others' passwords from the same address.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.errors import AppError
from server.settings import Settings
from server.store import signin_failures as failure_store
from server.store.db import Database
from server.store.models import SignInFailure, utcnow
from server.timeutil import as_utc

ACCOUNT_PREFIX = "email:"
ADDRESS_PREFIX = "ip:"
# Beyond this many doublings the cap has long been reached; it keeps 2**n small.
MAX_DOUBLINGS = 20


class TooManyAttempts(AppError):
    """Sign-in is locked for this account or address; `retry_after` is in whole seconds."""

    status = 429
    default_code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__("too_many_attempts", f"Too many tries. Try again in {in_words(retry_after)}.")
        self.retry_after = retry_after


def in_words(seconds: int) -> str:
    """A wait as a learner reads it: "30 seconds", "1 minute", "15 minutes" (rounded up, never shorter)."""
    if seconds < 60:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def account_key(normalized_email: str) -> str:
    return ACCOUNT_PREFIX + normalized_email


def keys_for(normalized_email: str, address: str) -> list[str]:
    """The keys a sign-in attempt counts against: the account, and the client address when known."""
    keys = [account_key(normalized_email)]
    if address:
        keys.append(ADDRESS_PREFIX + address)
    return keys


async def check(db: Database, keys: Sequence[str]) -> None:
    """Raise TooManyAttempts while any of these keys is locked."""
    now = utcnow()
    async with db.read() as session:
        until = await failure_store.locked_until(session, keys, now)
    if until is not None:
        raise TooManyAttempts(max(1, math.ceil((as_utc(until) - now).total_seconds())))


async def record_failure(db: Database, settings: Settings, keys: Sequence[str]) -> None:
    """Count one failed attempt against each key, locking those that reach their limit."""
    throttle = settings.auth.throttle
    window = timedelta(seconds=throttle.window_seconds)
    now = utcnow()
    async with db.write() as session:
        for row in await failure_store.lock_rows(session, keys, now):
            limit = throttle.account_failures if row.key.startswith(ACCOUNT_PREFIX) else throttle.address_failures
            count = _count(row, now, window, limit, throttle.lock_seconds, throttle.max_lock_seconds)
            await failure_store.save(
                session,
                row,
                failures=count.failures,
                window_start=count.window_start,
                lockouts=count.lockouts,
                locked_until=count.locked_until,
            )
    # Forget keys nobody has failed on for a while, in a transaction of its own that holds no other row.
    async with db.write() as session:
        await failure_store.remove_stale(session, now - window, now - window)


@dataclass(frozen=True)
class _Count:
    """A key's count after one more failure."""

    failures: int
    window_start: datetime
    lockouts: int
    locked_until: datetime | None


def _count(row: SignInFailure, now: datetime, window: timedelta, limit: int, lock: int, max_lock: int) -> _Count:
    failures, window_start, lockouts = row.failures, row.window_start, row.lockouts
    locked_until = as_utc(row.locked_until) if row.locked_until is not None else None
    new_lock = row.locked_until
    if now >= as_utc(window_start) + window:
        failures, window_start = 0, now
        if locked_until is None or now >= locked_until + window:
            lockouts = 0
    failures += 1
    if failures >= limit and (locked_until is None or locked_until <= now):
        lockouts += 1
        seconds = min(lock * 2 ** min(lockouts - 1, MAX_DOUBLINGS), max_lock)
        new_lock = now + timedelta(seconds=seconds)
    return _Count(failures, window_start, lockouts, new_lock)


async def clear_account(db: Database, normalized_email: str) -> None:
    async with db.write() as session:
        await failure_store.remove(session, account_key(normalized_email))
