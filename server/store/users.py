"""Queries on learner accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import User


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
    is_admin: bool = False,
    oidc_issuer: str | None = None,
    oidc_subject: str | None = None,
) -> User:
    """Insert an account; a taken email or identity raises IntegrityError here (at the flush), not at commit."""
    user = User(
        email=email,
        name=name,
        password_hash=password_hash,
        plan=plan,
        is_admin=is_admin,
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
