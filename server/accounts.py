"""Learner accounts: registration, password sign-in, single sign-on accounts, plans and usage."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from server import plans
from server.errors import BadRequest, Conflict, NotFound, Unauthorized
from server.settings import Settings
from server.store import companions as companion_store
from server.store import lessons as lesson_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import User
from server.timeutil import as_utc

_hasher = PasswordHasher()
# A hash to verify against when the email is unknown, so sign-in takes as long either way.
_DUMMY_HASH = _hasher.hash("not a real password")


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in learner, as the server session knows them."""

    id: int
    email: str
    name: str
    plan: str
    is_admin: bool


class UsageCount(BaseModel):
    used: int
    limit: int | None


class Usage(BaseModel):
    companions: UsageCount
    lessons: UsageCount


class Stats(BaseModel):
    companions_built: int
    lessons_done: int


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    plan: str
    is_admin: bool
    sso: bool
    created_at: datetime


class MeOut(UserOut):
    usage: Usage
    stats: Stats


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        plan=user.plan,
        is_admin=user.is_admin,
        sso=user.oidc_subject is not None,
        created_at=as_utc(user.created_at),
    )


def current(user: User) -> CurrentUser:
    return CurrentUser(id=user.id, email=user.email, name=user.name, plan=user.plan, is_admin=user.is_admin)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def register(
    db: Database, email: str, password: str, name: str, *, plan: str = "free", is_admin: bool = False
) -> UserOut:
    email = normalize_email(email)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    try:
        async with db.write() as session:
            if await user_store.by_email(session, email) is not None:
                raise Conflict("email_taken", "An account with this email already exists.")
            user = User(email=email, name=name.strip(), password_hash=password_hash, plan=plan, is_admin=is_admin)
            session.add(user)
            await session.flush()
            return _out(user)
    except IntegrityError as exc:
        raise Conflict("email_taken", "An account with this email already exists.") from exc


async def authenticate(db: Database, email: str, password: str) -> CurrentUser:
    async with db.read() as session:
        user = await user_store.by_email(session, normalize_email(email))
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None or not user.password_hash:
        raise Unauthorized("invalid_credentials", "Wrong email or password.")
    return current(user)


async def load_current(db: Database, user_id: int) -> CurrentUser | None:
    async with db.read() as session:
        user = await user_store.by_id(session, user_id)
    return current(user) if user is not None else None


async def sso_sign_in(
    db: Database,
    *,
    issuer: str,
    subject: str,
    email: str,
    name: str,
    plan: str | None,
    default_plan: str = "free",
) -> CurrentUser:
    """Find or create the account for an OIDC identity; a mapped plan claim updates the plan each sign-in."""
    email = normalize_email(email) if email else f"{subject}@{urlsplit(issuer).hostname or 'sso'}"
    async with db.write() as session:
        user = await user_store.by_oidc(session, issuer, subject)
        if user is None:
            existing = await user_store.by_email(session, email)
            if existing is not None:
                if existing.oidc_subject is not None:
                    raise Conflict("email_taken", "This email belongs to another single sign-on account.")
                # A local account with the same school email is linked to the school identity.
                user = existing
                user.oidc_issuer, user.oidc_subject = issuer, subject
            else:
                user = User(
                    email=email,
                    name=(name or email.split("@")[0])[:100],
                    oidc_issuer=issuer,
                    oidc_subject=subject,
                    plan=plan or default_plan,
                )
                session.add(user)
        if plan is not None:
            user.plan = plan
        await session.flush()
        return current(user)


async def set_plan(db: Database, email: str, plan: str) -> UserOut:
    if plan not in plans.PLANS:
        raise BadRequest("invalid_plan", f"plan must be one of {', '.join(plans.PLANS)}")
    async with db.write() as session:
        user = await user_store.by_email(session, normalize_email(email))
        if user is None:
            raise NotFound("user_not_found", f"no account with email {email}")
        user.plan = plan
        await session.flush()
        return _out(user)


async def list_users(db: Database) -> list[UserOut]:
    async with db.read() as session:
        return [_out(u) for u in await user_store.list_all(session)]


async def me(db: Database, settings: Settings, user_id: int) -> MeOut:
    since = plans.lesson_period_start(settings)
    async with db.read() as session:
        user = await user_store.by_id(session, user_id)
        if user is None:
            raise Unauthorized()
        companions_used = await companion_store.count_by_author(session, user_id)
        lessons_in_period = await lesson_store.count_for_learner(session, user_id, since)
        lessons_done = lessons_in_period if since is None else await lesson_store.count_for_learner(session, user_id)
    companion_limit, lesson_limit = plans.limits_for(settings, user.plan)
    return MeOut(
        **_out(user).model_dump(),
        usage=Usage(
            companions=UsageCount(used=companions_used, limit=companion_limit),
            lessons=UsageCount(used=lessons_in_period, limit=lesson_limit),
        ),
        stats=Stats(companions_built=companions_used, lessons_done=lessons_done),
    )
