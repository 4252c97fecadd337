"""Queries on server-side sessions: the one indexed lookup every signed-in request makes, and ending sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import ServerSession, User


@dataclass(frozen=True)
class SessionUser:
    """A live session and the account it belongs to, read in one query."""

    session_id: str
    last_seen_at: datetime
    user_id: int
    email: str
    name: str
    plan: str
    role: str


async def add(
    session: AsyncSession, session_id: str, user_id: int, expires_at: datetime, user_agent: str, ip: str
) -> None:
    session.add(ServerSession(id=session_id, user_id=user_id, expires_at=expires_at, user_agent=user_agent, ip=ip))
    await session.flush()


# Built once: every signed-in request runs it, and a statement reused keeps its compiled form in the cache.
_LIVE = (
    select(
        ServerSession.id,
        ServerSession.last_seen_at,
        User.id,
        User.email,
        User.name,
        User.plan,
        User.role,
    )
    .join(User, User.id == ServerSession.user_id)
    .where(
        ServerSession.id == bindparam("session_id"),
        ServerSession.expires_at > bindparam("now"),
        User.disabled_at.is_(None),
    )
)


def live(conn: Connection, session_id: str, now: datetime) -> SessionUser | None:
    """The session and its user, unless it expired or the account is disabled (a read unit, `Database.read_unit`).

    A primary-key lookup and a join, read afresh on every request so that an ended session is refused at once.
    """
    row = conn.execute(_LIVE, {"session_id": session_id, "now": now}).one_or_none()
    return SessionUser(*row) if row is not None else None


async def touch(session: AsyncSession, session_id: str, now: datetime, expires_at: datetime) -> None:
    await session.execute(
        update(ServerSession).where(ServerSession.id == session_id).values(last_seen_at=now, expires_at=expires_at)
    )


async def remove(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(ServerSession).where(ServerSession.id == session_id))


async def remove_for_user(session: AsyncSession, user_id: int, *, keep: str | None = None) -> int:
    """Delete the user's sessions (all but `keep`); returns how many ended."""
    query = delete(ServerSession).where(ServerSession.user_id == user_id)
    if keep is not None:
        query = query.where(ServerSession.id != keep)
    result = await session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


async def remove_expired_for_user(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        delete(ServerSession).where(ServerSession.user_id == user_id, ServerSession.expires_at <= now)
    )


async def for_user(session: AsyncSession, user_id: int, now: datetime) -> list[ServerSession]:
    query = (
        select(ServerSession)
        .where(ServerSession.user_id == user_id, ServerSession.expires_at > now)
        .order_by(ServerSession.last_seen_at.desc())
    )
    return list((await session.execute(query)).scalars())
