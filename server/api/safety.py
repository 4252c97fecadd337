"""Safety routes for teachers and administrators: the flags of their learners' lessons, and their own alerts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint

from server import safety
from server.api.auth import TEACHERS, current_user, role_required
from server.api.schema import json_response, validate_querystring
from server.safety import AlertList, FlagList
from server.settings import Severity
from server.state import get_state

bp = Blueprint("safety", __name__, url_prefix="/api/safety")


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # A page's filter form sends `?class_id=&severity=` for "any".
        return None if value == "" else value


class FlagQuery(_Query):
    class_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    severity: Severity | None = None
    limit: int = Field(default=50, ge=1, le=200)


class AlertQuery(_Query):
    limit: int = Field(default=50, ge=1, le=200)


@bp.get("/flags")
@role_required(*TEACHERS)
@validate_querystring(FlagQuery)
@json_response(FlagList)
async def list_flags(query_args: FlagQuery) -> FlagList:
    """Flags of the learners in the teacher's classes (an administrator's: everyone's), newest first."""
    return await safety.flags_for(
        get_state().db,
        current_user(),
        class_id=query_args.class_id,
        severity=query_args.severity,
        limit=query_args.limit,
    )


@bp.get("/alerts")
@role_required(*TEACHERS)
@validate_querystring(AlertQuery)
@json_response(AlertList)
async def list_alerts(query_args: AlertQuery) -> AlertList:
    """The signed-in teacher's or administrator's alerts, newest first, and how many are unread."""
    return await safety.alerts_for(get_state().db, current_user(), limit=query_args.limit)


@bp.post("/alerts/<int:alert_id>/read")
@role_required(*TEACHERS)
async def read_alert(alert_id: int) -> tuple[str, int]:
    await safety.mark_read(get_state().db, current_user(), alert_id)
    return "", 204
