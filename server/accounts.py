"""Learner accounts: registration, password sign-in, single sign-on accounts, plans and usage."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import plans, signin_throttle
from server.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from server.settings import Settings
from server.store import classes as class_store
from server.store import companions as companion_store
from server.store import lessons as lesson_store
from server.store import school_settings as school_store
from server.store import sessions as session_store
from server.store import users as user_store
from server.store.db import Database
from server.store.models import User, utcnow
from server.timeutil import as_utc

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
# A hash to verify against when the email is unknown, so sign-in takes as long either way.
_DUMMY_HASH = _hasher.hash("not a real password")

Role = Literal["learner", "teacher", "admin"]
ROLES: tuple[str, ...] = ("learner", "teacher", "admin")

DEFAULT_MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in user, as the server session knows them."""

    id: int
    email: str
    name: str
    plan: str
    role: str = "learner"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_teacher(self) -> bool:
        """A teacher or an administrator: both may run classes."""
        return self.role in ("teacher", "admin")


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
    role: Role
    is_admin: bool
    sso: bool
    created_at: datetime

    def signed_in(self) -> CurrentUser:
        """The account as a session signs it in."""
        return CurrentUser(self.id, self.email, self.name, self.plan, self.role)


class MeOut(UserOut):
    usage: Usage
    stats: Stats
    # In a teacher's class: the page tells the learner their teacher can read their lessons.
    in_class: bool = False


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        plan=user.plan,
        role=user.role,  # type: ignore[arg-type]
        is_admin=user.role == "admin",
        sso=user.oidc_subject is not None,
        created_at=as_utc(user.created_at),
    )


def current(user: User) -> CurrentUser:
    return CurrentUser(id=user.id, email=user.email, name=user.name, plan=user.plan, role=user.role)


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
    role: str = "learner",
    min_password_length: int | None = None,
    then: Callable[[AsyncSession, UserOut], None] | None = None,
) -> UserOut:
    """Create a local account with a password; `then` runs in the creating transaction (the audit log's entry).

    With `settings`, a learner is signing themself up: refused while the school has closed registration (the
    administrator's page, else auth.allow_registration), on the school's default plan and password rule. Without,
    an administrator creates the account (the command line), which closed registration does not stop.
    """
    if settings is not None:
        if not await registration_open(db, settings):
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
                role=role,
            )
            out = _out(user)
            if then is not None:
                then(session, out)
            return out
    except IntegrityError as exc:
        raise Conflict("email_taken", "An account with this email already exists.") from exc


async def registration_open(db: Database, settings: Settings) -> bool:
    """Whether anyone may sign up with a password: the administrator's choice, else the configured default.

    Single sign-on creates accounts either way: the school's identity provider already says who belongs.
    """
    async with db.read() as session:
        return await school_store.registration_open(session, settings.auth.allow_registration)


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


async def find(session: AsyncSession, who: int | str, *, lock: bool = False) -> User:
    """The account by id or by email (the command line names accounts by email), or 404 `user_not_found`."""
    if isinstance(who, int):
        user = await (user_store.lock if lock else user_store.by_id)(session, who)
    else:
        user = await user_store.by_email(session, normalize_email(who))
    if user is None:
        raise NotFound("user_not_found", f"no account with {'id' if isinstance(who, int) else 'email'} {who}")
    return user


async def apply_disabled(session: AsyncSession, user: User, disabled: bool) -> int:
    """Turn the account off, ending its sessions in the caller's transaction, or back on; returns sessions ended."""
    if not disabled:
        await user_store.set_disabled_at(session, user, None)
        return 0
    await user_store.set_disabled_at(session, user, user.disabled_at or utcnow())
    return await session_store.remove_for_user(session, user.id)


async def set_disabled(db: Database, who: int | str, disabled: bool) -> tuple[UserOut, int]:
    """Turn an account off (its sessions end in the same transaction) or back on; returns it and sessions ended."""
    async with db.write() as session:
        user = await find(session, who, lock=True)
        ended = await apply_disabled(session, user, disabled)
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
    role: str | None = None,
) -> CurrentUser:
    """Find or create the account for an OIDC identity; a mapped plan or role claim updates it each sign-in."""
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
                    role=role or "learner",
                )
        _refuse_disabled(user)
        if plan is not None and user.plan != plan:
            await user_store.set_plan(session, user, plan)
        if role is not None and user.role != role:
            await _apply_sso_role(session, user, role)
        return current(user)


async def _apply_sso_role(session: AsyncSession, user: User, role: str) -> None:
    if user.role == "admin":
        # The provider may not know who runs the server: its claim never takes the school's last administrator.
        others = [a for a in await user_store.lock_admins(session) if a.id != user.id and a.disabled_at is None]
        if not others:
            log.warning("sso: %s stays an administrator (the last one) though the role claim says %s", user.email, role)
            return
    log.info("sso: %s is now %s (role claim)", user.email, role)
    await user_store.set_role(session, user, role)


async def apply_plan(session: AsyncSession, user: User, plan: str) -> None:
    """Move the account to another plan in the caller's transaction."""
    if plan not in plans.PLANS:
        raise BadRequest("invalid_plan", f"plan must be one of {', '.join(plans.PLANS)}")
    await user_store.set_plan(session, user, plan)


async def set_plan(db: Database, who: int | str, plan: str) -> UserOut:
    async with db.write() as session:
        user = await find(session, who, lock=True)
        await apply_plan(session, user, plan)
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
        in_class = bool(await class_store.learner_class_ids(session, user_id))
    companion_limit, lesson_limit = plans.limits_for(settings, user.plan)
    return MeOut(
        **_out(user).model_dump(),
        usage=Usage(
            companions=UsageCount(used=companions_used, limit=companion_limit),
            lessons=UsageCount(used=lessons_in_period, limit=lesson_limit),
        ),
        stats=Stats(companions_built=companions_used, lessons_done=lessons_done),
        in_class=in_class,
    )
