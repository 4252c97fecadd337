"""Queries on safety flags and the alerts they raise: storing them, who is alerted, and who may read which."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Alert, ClassMember, Lesson, SafetyFlag, SchoolClass, User


@dataclass(frozen=True, slots=True)
class LessonLearner:
    """Who a lesson belongs to, as a flag and its alert name them."""

    lesson_id: int
    learner_id: int
    learner_name: str
    companion_name: str | None


@dataclass(frozen=True, slots=True)
class Recipient:
    id: int
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class FlagRecord:
    """A flag with its learner's name and its lesson's companion, as the console lists it."""

    id: int
    lesson_id: int
    learner_id: int
    learner_name: str
    companion_name: str | None
    role: str
    text: str
    category: str
    severity: str
    source: str
    action: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    read_at: datetime | None
    created_at: datetime
    flag: FlagRecord


async def lesson_learner(session: AsyncSession, lesson_id: int) -> LessonLearner | None:
    row = (
        await session.execute(
            select(Lesson.id, Lesson.learner_id, User.name, Lesson.companion_name)
            .join(User, User.id == Lesson.learner_id)
            .where(Lesson.id == lesson_id)
        )
    ).one_or_none()
    return None if row is None else LessonLearner(*row)


async def add_flag(
    session: AsyncSession,
    *,
    lesson_id: int,
    learner_id: int,
    role: str,
    text: str,
    category: str,
    severity: str,
    source: str,
    action: str,
) -> SafetyFlag:
    """Insert a flag and return it with its id."""
    flag = SafetyFlag(
        lesson_id=lesson_id,
        learner_id=learner_id,
        role=role,
        text=text,
        category=category,
        severity=severity,
        source=source,
        action=action,
    )
    session.add(flag)
    await session.flush()
    return flag


async def alert_recipients(session: AsyncSession, learner_id: int) -> list[Recipient]:
    """The teachers of every class the learner is in, and every administrator; enabled accounts, each once."""
    teachers = (
        select(SchoolClass.teacher_id)
        .join(ClassMember, ClassMember.class_id == SchoolClass.id)
        .where(ClassMember.learner_id == learner_id)
    )
    query = (
        select(User.id, User.email, User.name)
        .where((User.id.in_(teachers)) | (User.role == "admin"))
        .where(User.disabled_at.is_(None))
        .order_by(User.id)
    )
    return [Recipient(*row) for row in (await session.execute(query)).all()]


def add_alerts(session: AsyncSession, flag_id: int, recipient_ids: Sequence[int]) -> None:
    session.add_all([Alert(flag_id=flag_id, recipient_id=rid) for rid in recipient_ids])


async def class_teacher(session: AsyncSession, class_id: int) -> int | None:
    """The teacher who owns the class, or None when there is no such class."""
    teacher: int | None = await session.scalar(select(SchoolClass.teacher_id).where(SchoolClass.id == class_id))
    return teacher


def _flag_columns() -> tuple[Any, ...]:
    return (
        SafetyFlag.id,
        SafetyFlag.lesson_id,
        SafetyFlag.learner_id,
        User.name,
        Lesson.companion_name,
        SafetyFlag.role,
        SafetyFlag.text,
        SafetyFlag.category,
        SafetyFlag.severity,
        SafetyFlag.source,
        SafetyFlag.action,
        SafetyFlag.created_at,
    )


def _with_learner_and_lesson(query: Select[Any]) -> Select[Any]:
    return query.join(User, User.id == SafetyFlag.learner_id).join(Lesson, Lesson.id == SafetyFlag.lesson_id)


async def flags(
    session: AsyncSession,
    *,
    teacher_id: int | None,
    class_id: int | None,
    severity: str | None,
    limit: int,
) -> list[FlagRecord]:
    """Newest first: flags of learners in `teacher_id`'s classes (None: every learner's), optionally of one class.

    The scope is in the query, so a teacher's page never holds another class's flags, not even to filter them.
    """
    query = _with_learner_and_lesson(select(*_flag_columns()))
    if teacher_id is not None or class_id is not None:
        members = select(ClassMember.learner_id).join(SchoolClass, SchoolClass.id == ClassMember.class_id)
        if teacher_id is not None:
            members = members.where(SchoolClass.teacher_id == teacher_id)
        if class_id is not None:
            members = members.where(SchoolClass.id == class_id)
        query = query.where(SafetyFlag.learner_id.in_(members))
    if severity is not None:
        query = query.where(SafetyFlag.severity == severity)
    query = query.order_by(SafetyFlag.created_at.desc(), SafetyFlag.id.desc()).limit(limit)
    return [FlagRecord(*row) for row in (await session.execute(query)).all()]


async def alerts_of(session: AsyncSession, recipient_id: int, limit: int) -> list[AlertRecord]:
    """The recipient's alerts, newest first, each with its flag."""
    query = (
        _with_learner_and_lesson(
            select(Alert.id, Alert.read_at, Alert.created_at, *_flag_columns()).join(
                SafetyFlag, SafetyFlag.id == Alert.flag_id
            )
        )
        .where(Alert.recipient_id == recipient_id)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    )
    return [AlertRecord(row[0], row[1], row[2], FlagRecord(*row[3:])) for row in (await session.execute(query)).all()]


async def unread_count(session: AsyncSession, recipient_id: int) -> int:
    query = select(func.count()).select_from(Alert).where(Alert.recipient_id == recipient_id, Alert.read_at.is_(None))
    return int(await session.scalar(query) or 0)


async def mark_read(session: AsyncSession, alert_id: int, recipient_id: int, at: datetime) -> bool:
    """Mark the recipient's alert read (a second time keeps the first time); False if it is not theirs."""
    owned = await session.scalar(select(Alert.id).where(Alert.id == alert_id, Alert.recipient_id == recipient_id))
    if owned is None:
        return False
    await session.execute(update(Alert).where(Alert.id == alert_id, Alert.read_at.is_(None)).values(read_at=at))
    return True


# What a flag keeps of its utterance once the lesson's transcript is deleted (retention): the rest of the flag stays.
PRUNED_TEXT = ""


async def prune_texts(session: AsyncSession, started_before: datetime) -> int:
    """Blank the words of flags on lessons started before a moment, as their transcripts go; returns how many."""
    old_lessons = select(Lesson.id).where(Lesson.started_at < started_before)
    result = await session.execute(
        update(SafetyFlag)
        .where(SafetyFlag.lesson_id.in_(old_lessons), SafetyFlag.text != PRUNED_TEXT)
        .values(text=PRUNED_TEXT)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def of_learner(session: AsyncSession, learner_id: int) -> list[SafetyFlag]:
    """Every flag on the learner's lessons, oldest first (their data export)."""
    query = select(SafetyFlag).where(SafetyFlag.learner_id == learner_id).order_by(SafetyFlag.id)
    return list((await session.execute(query)).scalars())
