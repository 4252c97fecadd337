"""Administration routes: accounts, the school's settings, retention, usage, the server's status, the audit log.

Every route is for administrators only. Routes that take a body validate it before the role check, so a bad
body is the same 400 for anyone (its shape is public in /openapi.json) and only a well-formed one asks who you are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from server import admin
from server.accounts import Role
from server.admin import AdminUserPage, AdminUserRow, RetentionRun, SchoolSettingsOut, StatusOut, UsageOut
from server.api.auth import ADMINS, Email, Password, current_user, role_required
from server.api.schema import json_response, validate_querystring
from server.audit import AuditPage
from server.state import get_state

bp = Blueprint("admin", __name__, url_prefix="/api/admin")


class UsersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field(default="", max_length=200)
    role: Role | None = None
    page: int = Field(default=1, ge=1, le=100_000)
    limit: int = Field(default=25, ge=1, le=100)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: Email
    password: Password
    name: str = Field(min_length=1, max_length=100)
    role: Role = "learner"
    # None: the school's default plan.
    plan: Literal["free", "core", "pro"] | None = None


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    plan: Literal["free", "core", "pro"] | None = None
    disabled: bool | None = None


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    registration_open: bool | None = None
    # null (or 0) keeps transcripts for good.
    retention_days: int | None = Field(default=None, ge=0, le=36500)


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1)


@bp.get("/users")
@role_required(*ADMINS)
@validate_querystring(UsersQuery)
@json_response(AdminUserPage)
async def list_users(query_args: UsersQuery) -> AdminUserPage:
    return await admin.list_users(
        get_state().db, q=query_args.q, role=query_args.role, page=query_args.page, limit=query_args.limit
    )


@bp.post("/users")
@validate_request(NewUser)
@role_required(*ADMINS)
@validate_response(AdminUserRow, 201)
async def create_user(data: NewUser) -> tuple[AdminUserRow, int]:
    state = get_state()
    created = await admin.create_user(
        state.db,
        state.settings,
        current_user(),
        email=data.email,
        password=data.password,
        name=data.name,
        role=data.role,
        plan=data.plan,
    )
    return created, 201


@bp.patch("/users/<int:user_id>")
@validate_request(UserChange)
@role_required(*ADMINS)
@validate_response(AdminUserRow)
async def change_user(user_id: int, data: UserChange) -> AdminUserRow:
    return await admin.update_user(
        get_state().db, current_user(), user_id, role=data.role, plan=data.plan, disabled=data.disabled
    )


@bp.get("/users/<int:user_id>/export")
@role_required(*ADMINS)
async def export_user(user_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    data = await admin.export_user(get_state().db, current_user(), user_id)
    filename = f"learner-{user_id}.json"
    return data, 200, {"Content-Disposition": f'attachment; filename="{filename}"'}


@bp.delete("/users/<int:user_id>")
@role_required(*ADMINS)
async def delete_user(user_id: int) -> tuple[str, int]:
    await admin.delete_user(get_state().db, current_user(), user_id)
    return "", 204


@bp.get("/settings")
@role_required(*ADMINS)
@json_response(SchoolSettingsOut)
async def get_settings() -> SchoolSettingsOut:
    state = get_state()
    return await admin.school_settings(state.db, state.settings)


@bp.patch("/settings")
@validate_request(SettingsChange)
@role_required(*ADMINS)
@validate_response(SchoolSettingsOut)
async def change_settings(data: SettingsChange) -> SchoolSettingsOut:
    state = get_state()
    # Absent leaves the retention as it is; null says "keep for good", which the domain spells 0.
    days = (data.retention_days or 0) if "retention_days" in data.model_fields_set else None
    return await admin.change_settings(
        state.db, state.settings, current_user(), registration_open=data.registration_open, retention_days=days
    )


@bp.post("/retention/run")
@role_required(*ADMINS)
@validate_response(RetentionRun)
async def run_retention() -> RetentionRun:
    state = get_state()
    return await admin.run_retention(state.db, state.settings, current_user())


@bp.get("/usage")
@role_required(*ADMINS)
@json_response(UsageOut)
async def usage() -> UsageOut:
    state = get_state()
    return await admin.usage(state.db, state.settings)


@bp.get("/status")
@role_required(*ADMINS)
@json_response(StatusOut)
async def status() -> StatusOut:
    state = get_state()
    return await admin.status(state.db, state.settings, state.voice)


@bp.get("/audit")
@role_required(*ADMINS)
@validate_querystring(AuditQuery)
@json_response(AuditPage)
async def audit_log(query_args: AuditQuery) -> AuditPage:
    return await admin.audit_log(get_state().db, limit=query_args.limit, before=query_args.before)
