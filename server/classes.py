"""Classes: a teacher's learners and companions, the roster's lesson figures, and reading a learner's lessons.

A teacher sees only their own classes and the lessons of learners in them; an administrator sees every class.
A class that is not the viewer's is reported as absent (404), so class ids say nothing about other classes.
Every transcript a teacher or administrator opens is written to the audit log in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, plans
from server.accounts import CurrentUser, UsageCount, normalize_email
from server.companions import CompanionOut, to_out
from server.errors import BadRequest, Conflict, Gone, NotFound
from server.lessons import LessonOut, lesson_for_reader, lessons_for_reader
from server.settings import Settings
from server.store import classes as store
from server.store import companions as companion_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import SchoolClass, User
from server.timeutil import as_utc

# No 0/O, 1/I/L: a code read aloud or copied from a board is typed right the first time.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6


class TeacherOut(BaseModel):
    id: int
    name: str


class ClassOut(BaseModel):
    id: int
    name: str
    join_code: str
    join_code_expires_at: datetime | None
    teacher: TeacherOut
    learners_count: int
    companions_count: int
    created_at: datetime


class ClassList(BaseModel):
    classes: list[ClassOut]


class RosterUsage(BaseModel):
    companions: UsageCount
    lessons: UsageCount


class RosterRow(BaseModel):
    id: int
    name: str
    email: str
    plan: str
    lessons_count: int
    minutes: int
    last_active_at: datetime | None
    companions_used: list[str]
    usage: RosterUsage


class ClassCompanionOut(BaseModel):
    id: int
    name: str
    subject: str
    topic: str
    archived: bool


class ClassDetail(ClassOut):
    learners: list[RosterRow]
    companions: list[ClassCompanionOut]


class ClassDeleted(BaseModel):
    deleted: bool
    learners_released: int
    message: str


class JoinedClass(BaseModel):
    id: int
    name: str
    teacher_name: str


class Joined(BaseModel):
    # `class` is a Python keyword; the JSON key is still "class".
    model_config = ConfigDict(serialize_by_alias=True)
    joined: JoinedClass = Field(serialization_alias="class")


class MyClass(BaseModel):
    id: int
    name: str
    teacher_name: str
    companions: list[CompanionOut]


class MyClasses(BaseModel):
    classes: list[MyClass]


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """What a learner types: any case, spaces or a dash in the middle are fine."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _expiry(settings: Settings) -> datetime | None:
    days = settings.classes.join_code_days
    return datetime.now(UTC) + timedelta(days=days) if days else None


def _class_out(record: store.ClassRecord) -> ClassOut:
    return ClassOut(
        id=record.id,
        name=record.name,
        join_code=record.join_code,
        join_code_expires_at=as_utc(record.join_code_expires_at) if record.join_code_expires_at else None,
        teacher=TeacherOut(id=record.teacher_id, name=record.teacher_name),
        learners_count=record.learners_count,
        companions_count=record.companions_count,
        created_at=as_utc(record.created_at),
    )


def _visible_to(school_class: SchoolClass | None, viewer: CurrentUser) -> SchoolClass:
    if school_class is None or not (viewer.is_admin or school_class.teacher_id == viewer.id):
        raise NotFound("class_not_found", "No class with that id.")
    return school_class


async def _one(session: AsyncSession, class_id: int) -> ClassOut:
    found = await store.records(session, teacher_id=None, class_ids=[class_id])
    return _class_out(found[0])


async def list_classes(db: Database, viewer: CurrentUser) -> ClassList:
    async with db.read() as session:
        found = await store.records(session, teacher_id=None if viewer.is_admin else viewer.id)
    return ClassList(classes=[_class_out(r) for r in found])


async def _with_fresh_code(session: AsyncSession, make: Any) -> Any:
    """Run `make(code)` with a new code, again with another on the rare collision with a taken one."""
    for _ in range(5):
        code = new_code()
        try:
            async with session.begin_nested():
                return await make(code)
        except IntegrityError:
            continue
    raise Conflict("join_code_taken", "Could not find a free join code; try again.")


async def create(db: Database, settings: Settings, teacher: CurrentUser, name: str) -> ClassOut:
    async with db.write() as session:

        async def make(code: str) -> SchoolClass:
            return await store.create(
                session, name=name, teacher_id=teacher.id, join_code=code, expires_at=_expiry(settings)
            )

        created: SchoolClass = await _with_fresh_code(session, make)
        return await _one(session, created.id)


async def rename(db: Database, viewer: CurrentUser, class_id: int, name: str) -> ClassOut:
    async with db.write() as session:
        school_class = _visible_to(await store.lock(session, class_id), viewer)
        await store.rename(session, school_class, name)
        return await _one(session, class_id)


async def new_join_code(db: Database, settings: Settings, viewer: CurrentUser, class_id: int) -> ClassOut:
    async with db.write() as session:
        school_class = _visible_to(await store.lock(session, class_id), viewer)

        async def make(code: str) -> None:
            await store.set_code(session, school_class, code, _expiry(settings))

        await _with_fresh_code(session, make)
        return await _one(session, class_id)


async def delete(db: Database, viewer: CurrentUser, class_id: int, *, confirm: bool) -> ClassDeleted:
    """Delete a class. With learners in it, only when confirmed: they leave the class, their lessons stay theirs."""
    async with db.write() as session:
        school_class = _visible_to(await store.lock(session, class_id), viewer)
        learners = await store.member_count(session, class_id)
        if learners and not confirm:
            raise Conflict(
                "class_has_learners",
                f"This class still has {learners} learner{'s' if learners != 1 else ''}. Deleting it takes them out "
                "of the class; their lessons, transcripts and history stay with them. Confirm to delete it.",
            )
        await store.remove(session, school_class)
    message = (
        f"The class is deleted. Its {learners} learner{'s' if learners != 1 else ''} keep their lessons and history."
        if learners
        else "The class is deleted."
    )
    return ClassDeleted(deleted=True, learners_released=learners, message=message)


async def _roster(session: AsyncSession, settings: Settings, learners: list[User]) -> list[RosterRow]:
    ids = [u.id for u in learners]
    figures = await store.lesson_figures(session, ids)
    used = await store.companions_used(session, ids)
    built = await store.companions_built(session, ids)
    since = plans.lesson_period_start(settings)
    in_period = await store.lessons_since(session, ids, since) if since is not None else None
    rows = []
    for user in learners:
        f = figures.get(user.id, store.LessonFigures(0, 0, None))
        companion_limit, lesson_limit = plans.limits_for(settings, user.plan)
        lessons_used = f.lessons_count if in_period is None else in_period.get(user.id, 0)
        rows.append(
            RosterRow(
                id=user.id,
                name=user.name,
                email=user.email,
                plan=user.plan,
                lessons_count=f.lessons_count,
                minutes=round(f.seconds / 60),
                last_active_at=as_utc(f.last_active_at) if f.last_active_at else None,
                companions_used=used.get(user.id, []),
                usage=RosterUsage(
                    companions=UsageCount(used=built.get(user.id, 0), limit=companion_limit),
                    lessons=UsageCount(used=lessons_used, limit=lesson_limit),
                ),
            )
        )
    return rows


async def detail(db: Database, settings: Settings, viewer: CurrentUser, class_id: int) -> ClassDetail:
    async with db.read() as session:
        _visible_to(await store.get(session, class_id), viewer)
        summary = await _one(session, class_id)
        roster = await _roster(session, settings, await store.members(session, class_id))
        ids = (await store.companion_ids(session, [class_id])).get(class_id, [])
        rows = await companion_store.rows_by_ids(session, viewer.id, ids, archived=True)
    companions = [
        ClassCompanionOut(
            id=r.companion.id,
            name=r.companion.name,
            subject=r.companion.subject,
            topic=r.companion.topic,
            archived=r.companion.archived_at is not None,
        )
        for r in (rows[i] for i in ids if i in rows)
    ]
    return ClassDetail(**summary.model_dump(), learners=roster, companions=companions)


async def add_learner(db: Database, settings: Settings, viewer: CurrentUser, class_id: int, email: str) -> RosterRow:
    async with db.write() as session:
        _visible_to(await store.lock(session, class_id), viewer)
        learner = await user_store.by_email(session, normalize_email(email))
        if learner is None:
            raise NotFound("learner_not_found", "No learner has that e-mail address. They can sign up, then join.")
        if learner.role != "learner":
            raise BadRequest("not_a_learner", f"{learner.email} is a {learner.role}, not a learner.")
        if await store.is_member(session, class_id, learner.id):
            raise Conflict("already_in_class", f"{learner.name} is already in this class.")
        await store.add_member(session, class_id, learner.id)
        return (await _roster(session, settings, [learner]))[0]


async def remove_learner(db: Database, viewer: CurrentUser, class_id: int, learner_id: int) -> None:
    async with db.write() as session:
        _visible_to(await store.lock(session, class_id), viewer)
        if not await store.remove_member(session, class_id, learner_id):
            raise NotFound("learner_not_in_class", "That learner is not in this class.")


async def _member(session: AsyncSession, viewer: CurrentUser, class_id: int, learner_id: int) -> None:
    _visible_to(await store.get(session, class_id), viewer)
    if not await store.is_member(session, class_id, learner_id):
        raise NotFound("learner_not_in_class", "That learner is not in this class.")


async def learner_lessons(
    db: Database, viewer: CurrentUser, class_id: int, learner_id: int, limit: int
) -> dict[str, Any]:
    async with db.read() as session:
        await _member(session, viewer, class_id, learner_id)
    return {"lessons": await lessons_for_reader(db, viewer, learner_id, limit)}


async def read_lesson(db: Database, viewer: CurrentUser, class_id: int, lesson_id: int) -> LessonOut:
    """A class learner's lesson with its transcript; the reading is audited in the same transaction."""
    async with db.write() as session:
        _visible_to(await store.get(session, class_id), viewer)
        lesson = await lesson_for_reader(session, viewer, lesson_id)
        if lesson is None or not await store.is_member(session, class_id, lesson[1]):
            raise NotFound("lesson_not_found", "No lesson with that id in this class.")
        out, learner_id = lesson
        audit.record(
            session,
            viewer,
            audit.TRANSCRIPT_READ,
            learner_id=learner_id,
            lesson_id=lesson_id,
            detail=f"class {class_id}",
        )
    return out


async def assign_companion(db: Database, viewer: CurrentUser, class_id: int, companion_id: int) -> None:
    async with db.write() as session:
        _visible_to(await store.lock(session, class_id), viewer)
        companion = await companion_store.get(session, companion_id)
        if companion is None:
            raise NotFound("companion_not_found", "No companion with that id.")
        if companion.archived_at is not None:
            raise Conflict("companion_archived", "This companion was deleted by its author; it takes no new lessons.")
        await store.add_companion(session, class_id, companion_id)


async def unassign_companion(db: Database, viewer: CurrentUser, class_id: int, companion_id: int) -> None:
    async with db.write() as session:
        _visible_to(await store.lock(session, class_id), viewer)
        if not await store.remove_companion(session, class_id, companion_id):
            raise NotFound("companion_not_in_class", "That companion is not in this class.")


async def join(db: Database, learner: CurrentUser, code: str) -> JoinedClass:
    """A learner joins a class with its code."""
    typed = normalize_code(code)
    async with db.write() as session:
        school_class = await store.by_code(session, typed) if typed else None
        if school_class is None:
            raise NotFound("join_code_unknown", "No class has that code. Check it with your teacher.")
        expires = school_class.join_code_expires_at
        if expires is not None and as_utc(expires) <= datetime.now(UTC):
            raise Gone("join_code_expired", "This code has expired. Ask your teacher for a new one.")
        if learner.role != "learner":
            raise BadRequest("not_a_learner", "Only learners join classes; teachers run them.")
        if await store.is_member(session, school_class.id, learner.id):
            raise Conflict("already_in_class", f"You are already in {school_class.name}.")
        await store.add_member(session, school_class.id, learner.id)
        teacher = await user_store.by_id(session, school_class.teacher_id)
        return JoinedClass(id=school_class.id, name=school_class.name, teacher_name=teacher.name if teacher else "")


async def leave(db: Database, learner: CurrentUser, class_id: int) -> None:
    async with db.write() as session:
        if not await store.remove_member(session, class_id, learner.id):
            raise NotFound("class_not_found", "You are not in that class.")


async def mine(db: Database, learner: CurrentUser) -> MyClasses:
    """The learner's classes with their companions (the ones still in the library), for the library to show first."""
    async with db.read() as session:
        class_ids = await store.learner_class_ids(session, learner.id)
        records = {r.id: r for r in await store.records(session, teacher_id=None, class_ids=class_ids)}
        links = await store.companion_ids(session, class_ids)
        all_ids = [i for ids in links.values() for i in ids]
        rows = await companion_store.rows_by_ids(session, learner.id, all_ids)
    return MyClasses(
        classes=[
            MyClass(
                id=cid,
                name=records[cid].name,
                teacher_name=records[cid].teacher_name,
                companions=[to_out(rows[i], learner.id) for i in links.get(cid, []) if i in rows],
            )
            for cid in class_ids
            if cid in records
        ]
    )


async def in_a_class(db: Database, learner_id: int) -> bool:
    async with db.read() as session:
        return bool(await store.learner_class_ids(session, learner_id))
