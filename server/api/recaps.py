"""Recap and memory routes: writing a lesson's recap again, and the learner's own remembered facts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_response

from server import recaps
from server.api.auth import current_user, login_required
from server.api.schema import json_response, validate_querystring
from server.recaps import FactList, RecapOut
from server.state import get_state

bp = Blueprint("recaps", __name__)


class FactsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    companion_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


@bp.post("/api/lessons/<int:lesson_id>/recap")
@login_required
@validate_response(RecapOut, 202)
async def regenerate(lesson_id: int) -> tuple[RecapOut, int]:
    """Write the learner's own ended lesson's recap again; 202 with it pending (GET the lesson until it is not)."""
    worker: recaps.Recaps = get_state().extras[recaps.EXTRAS_KEY]
    return await worker.regenerate(current_user(), lesson_id), 202


@bp.get("/api/me/facts")
@login_required
@validate_querystring(FactsQuery)
@json_response(FactList)
async def my_facts(query_args: FactsQuery) -> FactList:
    """What the tutor remembers about the learner (with one companion, or all)."""
    return await recaps.facts_of(get_state().db, current_user(), query_args.companion_id)


@bp.delete("/api/me/facts/<int:fact_id>")
@login_required
async def forget_fact(fact_id: int) -> tuple[str, int]:
    await recaps.forget_fact(get_state().db, current_user(), fact_id)
    return "", 204
