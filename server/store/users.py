"""Queries on accounts: learners, teachers and administrators."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Lesson, User


async def by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def by_oidc(session: AsyncSession, issuer: str, subject: str) -> User | None:
    result = await session.execute(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))
    return result.scalar_one_or_none()


async def lock(session: AsyncSession, user_id: int) -> User | None:
    """Load the user and hold a row lock to the end of the transaction (PostgreSQL; SQLite locks the file)."""
    result = await session.execute(select(User).where(User.id == user_id).with_for_update())
    return result.scalar_one_or_none()


async def list_all(session: AsyncSession, limit: int = 1000) -> list[User]:
    result = await session.execute(select(User).order_by(User.id).limit(limit))
    return list(result.scalars())


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def create(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    plan: str,
    password_hash: str | None = None,
    role: str = "learner",
    oidc_issuer: str | None = None,
    oidc_subject: str | None = None,
) -> User:
    """Insert an account; a taken email or identity raises IntegrityError here (at the flush), not at commit."""
    user = User(
        email=email,
        name=name,
        password_hash=password_hash,
        plan=plan,
        role=role,
        oidc_issuer=oidc_issuer,
        oidc_subject=oidc_subject,
    )
    session.add(user)
    await session.flush()
    return user


async def set_password_hash(session: AsyncSession, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    await session.flush()


async def set_disabled_at(session: AsyncSession, user: User, disabled_at: datetime | None) -> None:
    user.disabled_at = disabled_at
    await session.flush()


async def set_plan(session: AsyncSession, user: User, plan: str) -> None:
    user.plan = plan
    await session.flush()


async def link_oidc(session: AsyncSession, user: User, issuer: str, subject: str) -> None:
    """Tie a local account to a single sign-on identity."""
    user.oidc_issuer, user.oidc_subject = issuer, subject
    await session.flush()


async def delete(session: AsyncSession, user: User) -> None:
    """Delete the account; what it owns goes with it (ON DELETE CASCADE)."""
    await session.delete(user)
    await session.flush()


@dataclass(frozen=True, slots=True)
class UserRow:
    """An account as the administrator's list shows it, with its lessons counted."""

    user: User
    lessons_count: int
    last_active_at: datetime | None


def _like(text: str) -> str:
    """A LIKE pattern finding `text` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _with_lessons() -> Select[User, int, datetime | None]:
    """Accounts with their lesson count and last lesson, from correlated subqueries on the (learner, started)
    index: a page of rows costs one query whatever the number of lessons in the school."""
    lessons_count = (
        select(func.count()).select_from(Lesson).where(Lesson.learner_id == User.id).correlate(User).scalar_subquery()
    )
    last_active = (
        select(func.max(Lesson.started_at)).where(Lesson.learner_id == User.id).correlate(User).scalar_subquery()
    )
    return select(User, lessons_count, last_active)


async def search(
    session: AsyncSession, *, q: str = "", role: str | None = None, limit: int = 25, offset: int = 0
) -> tuple[list[UserRow], int]:
    """A page of the accounts whose name or email contains `q` (any case), newest first, and how many match."""
    where = []
    if q.strip():
        pattern = _like(q.strip().lower())
        where.append(
            or_(func.lower(User.email).like(pattern, escape="\\"), func.lower(User.name).like(pattern, escape="\\"))
        )
    if role is not None:
        where.append(User.role == role)
    query = _with_lessons().where(*where).order_by(User.id.desc()).limit(limit).offset(offset)
    rows = [UserRow(user, int(count or 0), last) for user, count, last in await session.execute(query)]
    total = int(await session.scalar(select(func.count()).select_from(User).where(*where)) or 0)
    return rows, total


async def row(session: AsyncSession, user_id: int) -> UserRow | None:
    found = (await session.execute(_with_lessons().where(User.id == user_id))).one_or_none()
    return None if found is None else UserRow(found[0], int(found[1] or 0), found[2])


async def lock_admins(session: AsyncSession) -> list[User]:
    """Every administrator's row, locked to the end of the transaction (PostgreSQL; SQLite locks the file).

    Two administrators demoting each other at once then take turns, and the second sees the first's change, so
    the school cannot lose its last administrator that way.
    """
    result = await session.execute(select(User).where(User.role == "admin").order_by(User.id).with_for_update())
    return list(result.scalars())


async def set_role(session: AsyncSession, user: User, role: str) -> None:
    user.role = role
    await session.flush()
