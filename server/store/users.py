"""Queries on learner accounts."""

from __future__ import annotations

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
