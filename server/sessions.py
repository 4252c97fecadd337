"""Server-side sessions: a random token in the browser's cookie, its hash in our database, ended at once on demand."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from server.accounts import CurrentUser
from server.settings import Settings
from server.store import sessions as session_store
from server.store.db import Database
from server.store.models import utcnow
from server.timeutil import as_utc

# Sliding expiry without a write per request: last_seen_at (and so expires_at) moves at most this often.
TOUCH_EVERY = timedelta(minutes=5)
# A cookie longer than this is no token of ours; it is refused without hashing it.
MAX_TOKEN_LENGTH = 100
USER_AGENT_LENGTH = 200
IP_LENGTH = 64


@dataclass(frozen=True)
class Resolved:
    """The user a request's cookie signs in, the session's id, and whether its expiry just moved on."""

    user: CurrentUser
    session_id: str
    refreshed: bool


class SessionOut(BaseModel):
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    ip: str
    current: bool


class SessionList(BaseModel):
    items: list[SessionOut]


def session_id(token: str) -> str:
    """The row's id: the token's SHA-256, so the database never holds what the cookie holds."""
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetime(settings: Settings) -> timedelta:
    return timedelta(days=settings.auth.session_days)


async def start(
    db: Database, settings: Settings, user_id: int, *, user_agent: str, ip: str, replaces: str | None = None
) -> str:
    """Open a session for the user and return its token (for the cookie); `replaces` is a token it supersedes."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.write() as session:
        if replaces:
            await session_store.remove(session, session_id(replaces))
        # Sign-in is rare, so it is where a user's long-expired rows are cleared away.
        await session_store.remove_expired_for_user(session, user_id, now)
        await session_store.add(
            session,
            session_id(token),
            user_id,
            now + _lifetime(settings),
            user_agent[:USER_AGENT_LENGTH],
            ip[:IP_LENGTH],
        )
    return token


async def resolve(db: Database, settings: Settings, token: str) -> Resolved | None:
    """The signed-in user for this token, or None when the session ended, expired or its account is disabled."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    sid = session_id(token)
    now = utcnow()
    # A primary-key lookup: on SQLite at once on the event loop, not through the async session's four thread hops
    # a statement. Never cached, so logging out or disabling the account ends the session on the next request.
    found = await db.read_unit(lambda conn: session_store.live(conn, sid, now), quick=True)
    if found is None:
        return None
    refreshed = now - as_utc(found.last_seen_at) >= TOUCH_EVERY
    if refreshed:
        async with db.write() as session:
            await session_store.touch(session, sid, now, now + _lifetime(settings))
    user = CurrentUser(found.user_id, found.email, found.name, found.plan, found.role)
    return Resolved(user=user, session_id=sid, refreshed=refreshed)


async def end(db: Database, token: str) -> None:
    """Sign out this browser: its row goes, so a copy of the cookie is worth nothing from now on."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return
    async with db.write() as session:
        await session_store.remove(session, session_id(token))


async def end_all(db: Database, user_id: int, *, keep: str | None = None) -> int:
    """End every session of the user but `keep` (a session id); returns how many ended."""
    async with db.write() as session:
        return await session_store.remove_for_user(session, user_id, keep=keep)


async def list_for(db: Database, user_id: int, current_id: str | None) -> SessionList:
    async with db.read() as session:
        rows = await session_store.for_user(session, user_id, utcnow())
    return SessionList(
        items=[
            SessionOut(
                created_at=as_utc(row.created_at),
                last_seen_at=as_utc(row.last_seen_at),
                user_agent=row.user_agent,
                ip=row.ip,
                current=row.id == current_id,
            )
            for row in rows
        ]
    )
