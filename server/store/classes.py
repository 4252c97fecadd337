"""Queries on classes: their teachers, members (the roster and its lesson figures) and companions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import ClassCompanion, ClassMember, Companion, Lesson, SchoolClass, User


@dataclass(frozen=True, slots=True)
class ClassRecord:
    """A class with its teacher's name and how many learners and companions it has."""

    id: int
    name: str
    teacher_id: int
    teacher_name: str
    join_code: str
    join_code_expires_at: datetime | None
    created_at: datetime
    learners_count: int
    companions_count: int


@dataclass(frozen=True, slots=True)
class LessonFigures:
    """One learner's lessons in numbers."""

    lessons_count: int
    seconds: int
    last_active_at: datetime | None


def _records_query() -> Select[Any]:
    learners = (
        select(func.count())
        .select_from(ClassMember)
        .where(ClassMember.class_id == SchoolClass.id)
        .correlate(SchoolClass)
        .scalar_subquery()
    )
    companions = (
        select(func.count())
        .select_from(ClassCompanion)
        .where(ClassCompanion.class_id == SchoolClass.id)
        .correlate(SchoolClass)
        .scalar_subquery()
    )
    return select(
        SchoolClass.id,
        SchoolClass.name,
        SchoolClass.teacher_id,
        User.name,
        SchoolClass.join_code,
        SchoolClass.join_code_expires_at,
        SchoolClass.created_at,
        learners,
        companions,
    ).join(User, User.id == SchoolClass.teacher_id)


async def records(
    session: AsyncSession, *, teacher_id: int | None, class_ids: Sequence[int] | None = None
) -> list[ClassRecord]:
    """Classes newest first: one teacher's (or every class, `teacher_id` None), optionally only these."""
    query = _records_query().order_by(SchoolClass.id.desc())
    if teacher_id is not None:
        query = query.where(SchoolClass.teacher_id == teacher_id)
    if class_ids is not None:
        query = query.where(SchoolClass.id.in_(class_ids))
    return [ClassRecord(*row) for row in (await session.execute(query)).all()]


async def get(session: AsyncSession, class_id: int) -> SchoolClass | None:
    return await session.get(SchoolClass, class_id)


async def lock(session: AsyncSession, class_id: int) -> SchoolClass | None:
    query = select(SchoolClass).where(SchoolClass.id == class_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def by_code(session: AsyncSession, code: str) -> SchoolClass | None:
    return (await session.execute(select(SchoolClass).where(SchoolClass.join_code == code))).scalar_one_or_none()


async def create(
    session: AsyncSession, *, name: str, teacher_id: int, join_code: str, expires_at: datetime | None
) -> SchoolClass:
    """Insert a class; a join code already taken raises IntegrityError at the flush."""
    school_class = SchoolClass(name=name, teacher_id=teacher_id, join_code=join_code, join_code_expires_at=expires_at)
    session.add(school_class)
    await session.flush()
    return school_class


async def set_code(session: AsyncSession, school_class: SchoolClass, code: str, expires_at: datetime | None) -> None:
    school_class.join_code = code
    school_class.join_code_expires_at = expires_at
    await session.flush()


async def rename(session: AsyncSession, school_class: SchoolClass, name: str) -> None:
    school_class.name = name
    await session.flush()


async def remove(session: AsyncSession, school_class: SchoolClass) -> None:
    """Delete the class; its memberships and companion links go with it, never a learner's lessons."""
    await session.delete(school_class)
    await session.flush()


async def member_count(session: AsyncSession, class_id: int) -> int:
    query = select(func.count()).select_from(ClassMember).where(ClassMember.class_id == class_id)
    return int(await session.scalar(query) or 0)


async def is_member(session: AsyncSession, class_id: int, learner_id: int) -> bool:
    return await session.get(ClassMember, (class_id, learner_id)) is not None


async def add_member(session: AsyncSession, class_id: int, learner_id: int) -> None:
    """Add a learner; one already in raises IntegrityError at the flush (the primary key)."""
    session.add(ClassMember(class_id=class_id, learner_id=learner_id))
    await session.flush()


async def remove_member(session: AsyncSession, class_id: int, learner_id: int) -> bool:
    result = await session.execute(
        delete(ClassMember).where(ClassMember.class_id == class_id, ClassMember.learner_id == learner_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def members(session: AsyncSession, class_id: int) -> list[User]:
    query = (
        select(User)
        .join(ClassMember, ClassMember.learner_id == User.id)
        .where(ClassMember.class_id == class_id)
        .order_by(User.name, User.id)
    )
    return list((await session.execute(query)).scalars())


async def lesson_figures(session: AsyncSession, learner_ids: Sequence[int]) -> dict[int, LessonFigures]:
    """Per learner: lessons, seconds spent in them, and when the latest began; one grouped statement."""
    if not learner_ids:
        return {}
    query = (
        select(
            Lesson.learner_id,
            func.count(),
            func.coalesce(func.sum(Lesson.length_seconds), 0),
            func.max(Lesson.started_at),
        )
        .where(Lesson.learner_id.in_(learner_ids))
        .group_by(Lesson.learner_id)
    )
    return {
        row[0]: LessonFigures(int(row[1]), int(row[2] or 0), row[3]) for row in (await session.execute(query)).all()
    }


async def lessons_since(session: AsyncSession, learner_ids: Sequence[int], since: datetime) -> dict[int, int]:
    """Per learner, the lessons started since a moment (a plan's counting period)."""
    if not learner_ids:
        return {}
    query = (
        select(Lesson.learner_id, func.count())
        .where(Lesson.learner_id.in_(learner_ids), Lesson.started_at >= since)
        .group_by(Lesson.learner_id)
    )
    return {row[0]: int(row[1]) for row in (await session.execute(query)).all()}


async def companions_used(session: AsyncSession, learner_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per learner, the names of the companions they held lessons with (as the lessons recorded them)."""
    if not learner_ids:
        return {}
    query = (
        select(Lesson.learner_id, Lesson.companion_name)
        .where(Lesson.learner_id.in_(learner_ids), Lesson.companion_name.is_not(None))
        .distinct()
        .order_by(Lesson.learner_id, Lesson.companion_name)
    )
    used: dict[int, list[str]] = {}
    for learner_id, name in (await session.execute(query)).all():
        if name is not None:
            used.setdefault(learner_id, []).append(name)
    return used


async def companions_built(session: AsyncSession, learner_ids: Sequence[int]) -> dict[int, int]:
    """Per learner, the companions they built that count toward their plan."""
    if not learner_ids:
        return {}
    query = (
        select(Companion.author_id, func.count())
        .where(Companion.author_id.in_(learner_ids))
        .group_by(Companion.author_id)
    )
    return {row[0]: int(row[1]) for row in (await session.execute(query)).all()}


async def companion_ids(session: AsyncSession, class_ids: Sequence[int]) -> dict[int, list[int]]:
    """Per class, its companions' ids in the order they were added."""
    if not class_ids:
        return {}
    query = (
        select(ClassCompanion.class_id, ClassCompanion.companion_id)
        .where(ClassCompanion.class_id.in_(class_ids))
        .order_by(ClassCompanion.added_at, ClassCompanion.companion_id)
    )
    found: dict[int, list[int]] = {}
    for class_id, companion_id in (await session.execute(query)).all():
        found.setdefault(class_id, []).append(companion_id)
    return found


async def add_companion(session: AsyncSession, class_id: int, companion_id: int) -> bool:
    """Link a companion to a class; False when it already was."""
    if await session.get(ClassCompanion, (class_id, companion_id)) is not None:
        return False
    session.add(ClassCompanion(class_id=class_id, companion_id=companion_id))
    await session.flush()
    return True


async def remove_companion(session: AsyncSession, class_id: int, companion_id: int) -> bool:
    result = await session.execute(
        delete(ClassCompanion).where(ClassCompanion.class_id == class_id, ClassCompanion.companion_id == companion_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def learner_class_ids(session: AsyncSession, learner_id: int) -> list[int]:
    query = select(ClassMember.class_id).where(ClassMember.learner_id == learner_id).order_by(ClassMember.added_at)
    return list((await session.execute(query)).scalars())


async def teaches_learner(session: AsyncSession, teacher_id: int, learner_id: int) -> bool:
    """Whether the learner is in one of the teacher's classes."""
    query = (
        select(ClassMember.class_id)
        .join(SchoolClass, SchoolClass.id == ClassMember.class_id)
        .where(SchoolClass.teacher_id == teacher_id, ClassMember.learner_id == learner_id)
        .limit(1)
    )
    return (await session.scalar(query)) is not None
