"""Learner accounts: registration, password sign-in, single sign-on accounts, plans and usage."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from server import plans, signin_throttle
from server.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from server.settings import Settings
from server.store import companions as companion_store
from server.store import lessons as lesson_store
from server.store import sessions as session_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import User, utcnow
from server.timeutil import as_utc

_hasher = PasswordHasher()
# A hash to verify against when the email is unknown, so sign-in takes as long either way.
_DUMMY_HASH = _hasher.hash("not a real password")

DEFAULT_MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


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

    def signed_in(self) -> CurrentUser:
        """The account as a session signs it in."""
        return CurrentUser(self.id, self.email, self.name, self.plan, self.is_admin)


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


@functools.cache
def _common_passwords() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most common passwords (lower case), loaded on first use."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password: str, min_length: int = DEFAULT_MIN_PASSWORD_LENGTH) -> str | None:
    """What is wrong with a new password, in a learner's words, or None.

    The password is taken exactly as typed, spaces included, by sign-up, sign-in and password change alike.
    """
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    if password.lower() in _common_passwords():
        return "This is one of the most common passwords, so it is easy to guess. Choose another."
    return None


def check_new_password(password: str, min_length: int = DEFAULT_MIN_PASSWORD_LENGTH, field: str = "password") -> None:
    problem = password_problem(password, min_length)
    if problem is not None:
        raise BadRequest("validation_error", f"{field}: {problem}", fields={field: problem})


async def register(
    db: Database,
    email: str,
    password: str,
    name: str,
    *,
    settings: Settings | None = None,
    plan: str | None = None,
    is_admin: bool = False,
    min_password_length: int | None = None,
) -> UserOut:
    """Create a local account with a password.

    With `settings`, a learner is signing themself up: refused while the school has closed registration, on the
    school's default plan and password rule. Without, an administrator creates the account (the command line),
    which closed registration does not stop.
    """
    if settings is not None:
        if not settings.auth.allow_registration:
            raise Forbidden("registration_closed", "This school creates accounts for you; sign in with your school.")
        plan = plan or settings.plans.default_plan
        if min_password_length is None:
            min_password_length = settings.auth.min_password_length
    email = normalize_email(email)
    check_new_password(password, DEFAULT_MIN_PASSWORD_LENGTH if min_password_length is None else min_password_length)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    try:
        async with db.write() as session:
            if await user_store.by_email(session, email) is not None:
                raise Conflict("email_taken", "An account with this email already exists.")
            user = await user_store.create(
                session,
                email=email,
                name=name.strip(),
                password_hash=password_hash,
                plan=plan or "free",
                is_admin=is_admin,
            )
            return _out(user)
    except IntegrityError as exc:
        raise Conflict("email_taken", "An account with this email already exists.") from exc


async def _verify(stored: str | None, password: str) -> bool:
    try:
        await asyncio.to_thread(_hasher.verify, stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None


def _refuse_disabled(user: User) -> None:
    if user.disabled_at is not None:
        raise Forbidden("account_disabled", "This account has been turned off. Ask your school to turn it back on.")


async def authenticate(db: Database, email: str, password: str) -> CurrentUser:
    async with db.read() as session:
        user = await user_store.by_email(session, normalize_email(email))
    # Verified even for an unknown email (against a dummy hash), so the answer takes as long either way.
    verified = await _verify(user.password_hash if user is not None else None, password)
    if user is None or not verified:
        raise Unauthorized("invalid_credentials", "Wrong email or password.")
    # Only after the password is right, so the answer tells a stranger nothing about the account.
    _refuse_disabled(user)
    return current(user)


async def password_sign_in(db: Database, settings: Settings, email: str, password: str, address: str) -> CurrentUser:
    """Sign in with email and password, under the throttle on failed attempts (per account and per address)."""
    email = normalize_email(email)
    keys = signin_throttle.keys_for(email, address)
    await signin_throttle.check(db, keys)
    try:
        user = await authenticate(db, email, password)
    except Unauthorized:
        await signin_throttle.record_failure(db, settings, keys)
        raise
    await signin_throttle.clear_account(db, email)
    return user


async def change_password(
    db: Database,
    settings: Settings,
    user: CurrentUser,
    current_password: str,
    new_password: str,
    *,
    keep_session: str | None,
    address: str,
) -> int:
    """Check the current password, set the new one and end every other session; returns how many ended.

    Wrong current passwords count against the same throttle as sign-in, so a borrowed session cannot be used to
    guess the password.
    """
    check_new_password(new_password, settings.auth.min_password_length, field="new_password")
    keys = signin_throttle.keys_for(user.email, address)
    await signin_throttle.check(db, keys)
    async with db.read() as session:
        stored = await user_store.by_id(session, user.id)
    if stored is None:
        raise Unauthorized()
    if not stored.password_hash:
        raise BadRequest("no_password", "You sign in with your school, so there is no password to change here.")
    if not await _verify(stored.password_hash, current_password):
        await signin_throttle.record_failure(db, settings, keys)
        message = "This is not your current password."
        raise BadRequest("validation_error", f"current_password: {message}", fields={"current_password": message})
    new_hash = await asyncio.to_thread(_hasher.hash, new_password)
    async with db.write() as session:
        row = await user_store.lock(session, user.id)
        if row is None:
            raise Unauthorized()
        await user_store.set_password_hash(session, row, new_hash)
        ended = await session_store.remove_for_user(session, user.id, keep=keep_session)
    await signin_throttle.clear_account(db, user.email)
    return ended


async def set_disabled(db: Database, email: str, disabled: bool) -> tuple[UserOut, int]:
    """Turn an account off (its sessions end in the same transaction) or back on; returns it and sessions ended."""
    async with db.write() as session:
        user = await user_store.by_email(session, normalize_email(email))
        if user is None:
            raise NotFound("user_not_found", f"no account with email {email}")
        ended = 0
        if disabled:
            await user_store.set_disabled_at(session, user, user.disabled_at or utcnow())
            ended = await session_store.remove_for_user(session, user.id)
        else:
            await user_store.set_disabled_at(session, user, None)
        return _out(user), ended


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
                await user_store.link_oidc(session, user, issuer, subject)
            else:
                user = await user_store.create(
                    session,
                    email=email,
                    name=(name or email.split("@")[0])[:100],
                    oidc_issuer=issuer,
                    oidc_subject=subject,
                    plan=plan or default_plan,
                )
        _refuse_disabled(user)
        if plan is not None and user.plan != plan:
            await user_store.set_plan(session, user, plan)
        return current(user)


async def set_plan(db: Database, email: str, plan: str) -> UserOut:
    if plan not in plans.PLANS:
        raise BadRequest("invalid_plan", f"plan must be one of {', '.join(plans.PLANS)}")
    async with db.write() as session:
        user = await user_store.by_email(session, normalize_email(email))
        if user is None:
            raise NotFound("user_not_found", f"no account with email {email}")
        await user_store.set_plan(session, user, plan)
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
