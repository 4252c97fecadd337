"""The administrator's side: accounts (role, plan, turned off, export, delete), the school's settings, usage
across the school, the server's status and the audit log.

Every change and every export is written to the audit log in the transaction that makes it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from server import accounts, audit, plans, retention
from server.accounts import CurrentUser, Role
from server.audit import AuditPage
from server.doctor import run_checks
from server.errors import Conflict, Forbidden, NotFound
from server.settings import Settings
from server.store import school_settings as school_store
from server.store import usage as usage_store
from server.store import users as user_store
from server.store.db import Database
from server.store.users import UserRow
from server.timeutil import as_utc

if TYPE_CHECKING:
    from server.pipeline.service import VoiceService

# The audit log's actions for what this module changes (retention.py names its exports, deletions and prunes).
CREATE = "user.create"
ROLE_CHANGE = "user.role"
PLAN_CHANGE = "user.plan"
DISABLE = "user.disable"
ENABLE = "user.enable"
SETTINGS_CHANGE = "settings.change"
# A learner who has started this share of their plan's lessons (in the plan's period) is "near the limit".
NEAR_LIMIT_SHARE = 0.8


class AdminUserRow(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    plan: str
    sso: bool
    disabled: bool
    created_at: datetime
    lessons_count: int
    last_active_at: datetime | None


class AdminUserPage(BaseModel):
    users: list[AdminUserRow]
    total: int


class SchoolSettingsOut(BaseModel):
    registration_open: bool
    # None: transcripts are kept for good.
    retention_days: int | None


class RetentionRun(BaseModel):
    # Transcript entries (utterances) deleted, as `tutor lessons prune` counts them.
    transcripts_deleted: int


class UsersUsage(BaseModel):
    learner: int
    teacher: int
    admin: int
    disabled: int


class LessonsUsage(BaseModel):
    total: int
    last_7_days: int
    minutes_last_30_days: int


class PlansUsage(BaseModel):
    free: int
    core: int
    pro: int


class NearLimitOut(BaseModel):
    id: int
    name: str
    plan: str
    lessons_used: int
    lessons_limit: int


class UsageOut(BaseModel):
    users: UsersUsage
    lessons: LessonsUsage
    plans: PlansUsage
    near_limit: list[NearLimitOut]


class StatusCheck(BaseModel):
    name: str
    ok: bool
    detail: str


class StatusOut(BaseModel):
    checks: list[StatusCheck]


def _row(found: UserRow) -> AdminUserRow:
    user = found.user
    return AdminUserRow(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,  # type: ignore[arg-type]
        plan=user.plan,
        sso=user.oidc_subject is not None,
        disabled=user.disabled_at is not None,
        created_at=as_utc(user.created_at),
        lessons_count=found.lessons_count,
        last_active_at=as_utc(found.last_active_at) if found.last_active_at is not None else None,
    )


async def list_users(
    db: Database, *, q: str = "", role: str | None = None, page: int = 1, limit: int = 25
) -> AdminUserPage:
    async with db.read() as session:
        rows, total = await user_store.search(session, q=q, role=role, limit=limit, offset=(page - 1) * limit)
    return AdminUserPage(users=[_row(r) for r in rows], total=total)


async def create_user(
    db: Database,
    settings: Settings,
    actor: CurrentUser,
    *,
    email: str,
    password: str,
    name: str,
    role: str = "learner",
    plan: str | None = None,
) -> AdminUserRow:
    """What `tutor users create` does, audited: closed registration does not stop an administrator."""

    def record(session: AsyncSession, user: accounts.UserOut) -> None:
        detail = f"created {user.email} ({user.role}, {user.plan} plan)"
        audit.record(session, actor, CREATE, learner_id=user.id, detail=detail)

    created = await accounts.register(
        db,
        email,
        password,
        name,
        plan=plan or settings.plans.default_plan,
        role=role,
        min_password_length=settings.auth.min_password_length,
        then=record,
    )
    async with db.read() as session:
        found = await user_store.row(session, created.id)
    if found is None:  # deleted by another administrator in the meantime
        raise NotFound("user_not_found", f"no account with id {created.id}")
    return _row(found)


async def update_user(
    db: Database,
    actor: CurrentUser,
    user_id: int,
    *,
    role: str | None = None,
    plan: str | None = None,
    disabled: bool | None = None,
) -> AdminUserRow:
    """Change an account's role, plan and whether it is turned off, in one transaction, each change audited.

    Turning an account off ends its sessions in the same transaction, so its next request is signed out; a new
    role counts from the account's next request (every request reads the role from the session's row).
    """
    async with db.write() as session:
        # Every administrator's row stays locked to the commit: two administrators changing each other at once
        # take turns, and the second sees what the first did.
        admins = [a for a in await user_store.lock_admins(session) if a.disabled_at is None]
        if actor.id not in {a.id for a in admins}:
            raise Forbidden("forbidden", "You are no longer an administrator.")
        user = await accounts.find(session, user_id, lock=True)
        if user.id == actor.id and ((role is not None and role != "admin") or disabled):
            raise Conflict(
                "cannot_change_self",
                "You cannot take away your own administrator role or turn off your own account; "
                "another administrator can.",
            )
        if role is not None and role != user.role:
            if user.role == "admin" and not [a for a in admins if a.id != user.id]:
                raise Conflict("last_admin", "The school's last administrator cannot be given another role.")
            before = user.role
            await user_store.set_role(session, user, role)
            audit.record(session, actor, ROLE_CHANGE, learner_id=user.id, detail=f"{user.email}: {before} -> {role}")
        if plan is not None and plan != user.plan:
            before = user.plan
            await accounts.apply_plan(session, user, plan)
            audit.record(session, actor, PLAN_CHANGE, learner_id=user.id, detail=f"{user.email}: {before} -> {plan}")
        if disabled is not None and disabled != (user.disabled_at is not None):
            ended = await accounts.apply_disabled(session, user, disabled)
            if disabled:
                detail = f"{user.email}: turned off, {ended} session{'' if ended == 1 else 's'} ended"
                audit.record(session, actor, DISABLE, learner_id=user.id, detail=detail)
            else:
                audit.record(session, actor, ENABLE, learner_id=user.id, detail=f"{user.email}: turned on")
        found = await user_store.row(session, user.id)
        assert found is not None  # locked above
        return _row(found)


async def export_user(db: Database, actor: CurrentUser, user_id: int) -> dict[str, Any]:
    """What `tutor users export` prints, audited."""
    return await retention.export_learner(db, user_id, actor=actor)


async def delete_user(db: Database, actor: CurrentUser, user_id: int) -> None:
    """What `tutor users delete` does (other learners' lessons with their companions stay), audited."""
    if user_id == actor.id:
        raise Conflict("cannot_change_self", "You cannot delete your own account; another administrator can.")
    await retention.delete_learner(db, user_id, actor=actor)


async def school_settings(db: Database, settings: Settings) -> SchoolSettingsOut:
    """The settings as they apply now: what an administrator set, else config.toml's defaults."""
    async with db.read() as session:
        registration = await school_store.registration_open(session, settings.auth.allow_registration)
        days = await school_store.retention_days(session, settings.retention.days)
    return SchoolSettingsOut(registration_open=registration, retention_days=days or None)


def _days(value: int | None) -> str:
    return "kept for good" if not value else f"{value} days"


async def change_settings(
    db: Database,
    settings: Settings,
    actor: CurrentUser,
    *,
    registration_open: bool | None = None,
    retention_days: int | None = None,
) -> SchoolSettingsOut:
    """Change what is given (None leaves it; retention_days 0 keeps transcripts for good), audited."""
    async with db.write() as session:
        changes = []
        if registration_open is not None:
            before = await school_store.registration_open(session, settings.auth.allow_registration)
            await school_store.set_registration_open(session, registration_open)
            if before != registration_open:
                changes.append(f"registration {'opened' if registration_open else 'closed'}")
        if retention_days is not None:
            was = await school_store.retention_days(session, settings.retention.days)
            await school_store.set_retention_days(session, retention_days)
            if was != retention_days:
                changes.append(f"transcripts {_days(was)} -> {_days(retention_days)}")
        if changes:
            audit.record(session, actor, SETTINGS_CHANGE, detail="; ".join(changes))
    return await school_settings(db, settings)


async def run_retention(db: Database, settings: Settings, actor: CurrentUser) -> RetentionRun:
    """Delete the transcripts older than the retention days now (the server also does it by itself)."""
    days = await retention.retention_days(db, settings)
    if days is None:
        raise Conflict("retention_off", "Transcripts are kept for good: set how many days to keep them first.")
    return RetentionRun(transcripts_deleted=await retention.prune_transcripts(db, days, actor=actor))


async def usage(db: Database, settings: Settings, *, now: datetime | None = None) -> UsageOut:
    now = now or datetime.now(UTC)
    limits: dict[str, int | None] = {plan: plans.limits_for(settings, plan)[1] for plan in plans.PLANS}
    thresholds = {
        plan: max(1, math.ceil(limit * NEAR_LIMIT_SHARE))
        for plan, limit in limits.items()
        if limit  # None, 0: none
    }
    async with db.read() as session:
        roles = await usage_store.accounts_by(session, "role")
        on_plans = await usage_store.accounts_by(session, "plan")
        disabled = await usage_store.disabled_accounts(session)
        total = await usage_store.lessons_since(session)
        week = await usage_store.lessons_since(session, now - timedelta(days=7))
        seconds = await usage_store.seconds_since(session, now - timedelta(days=30))
        near = await usage_store.near_lesson_limit(session, thresholds, plans.lesson_period_start(settings, now))
    return UsageOut(
        users=UsersUsage(
            learner=roles.get("learner", 0),
            teacher=roles.get("teacher", 0),
            admin=roles.get("admin", 0),
            disabled=disabled,
        ),
        lessons=LessonsUsage(total=total, last_7_days=week, minutes_last_30_days=round(seconds / 60)),
        plans=PlansUsage(free=on_plans.get("free", 0), core=on_plans.get("core", 0), pro=on_plans.get("pro", 0)),
        near_limit=[
            NearLimitOut(
                id=n.id, name=n.name, plan=n.plan, lessons_used=n.lessons_used, lessons_limit=limits[n.plan] or 0
            )
            for n in near
        ],
    )


async def status(db: Database, settings: Settings, voice: VoiceService | None = None) -> StatusOut:
    """What `tutor doctor` says, for the running server (its own database and loaded models)."""
    checks = await run_checks(settings, db, voice)
    return StatusOut(checks=[StatusCheck(name=name, ok=ok, detail=detail) for name, ok, detail in checks])


async def audit_log(db: Database, *, limit: int = 50, before: int | None = None) -> AuditPage:
    return await audit.newest(db, limit=limit, before=before)
