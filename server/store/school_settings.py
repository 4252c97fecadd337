"""Queries on the settings an administrator changes in the page (registration open, retention days).

Each is one row, key -> text; a key without a row takes the default the caller passes (from config.toml), so a
school that never touched the page runs exactly as configured.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import SchoolSetting

REGISTRATION_OPEN = "registration_open"
# Whole days; "0" keeps transcripts for good (an administrator's choice that wins over a configured number).
RETENTION_DAYS = "retention_days"


async def _value(session: AsyncSession, key: str) -> str | None:
    return await session.scalar(select(SchoolSetting.value).where(SchoolSetting.key == key))


async def registration_open(session: AsyncSession, default: bool) -> bool:
    value = await _value(session, REGISTRATION_OPEN)
    return default if value is None else value == "true"


async def retention_days(session: AsyncSession, default: int) -> int:
    """Days transcripts are kept; 0 = for good."""
    value = await _value(session, RETENTION_DAYS)
    return default if value is None or not value.isdigit() else int(value)


async def _put(session: AsyncSession, key: str, value: str) -> None:
    # An upsert, so two administrators saving at once cannot both insert the first row (both dialects have it).
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(SchoolSetting).values(key=key, value=value)
    await session.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


async def set_registration_open(session: AsyncSession, value: bool) -> None:
    await _put(session, REGISTRATION_OPEN, "true" if value else "false")


async def set_retention_days(session: AsyncSession, days: int) -> None:
    await _put(session, RETENTION_DAYS, str(days))
