"""Lesson routes: recent lessons across the school, one lesson with its transcript, and its call set-up."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, request

from server import calls, lessons, recaps
from server.api.auth import current_user, login_required
from server.api.schema import json_response, validate_querystring
from server.companions import CompanionList
from server.lessons import LessonOut
from server.state import get_state

bp = Blueprint("lessons", __name__, url_prefix="/api/lessons")


class LimitQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=10, ge=1, le=100)


@bp.get("/recent")
@login_required
@validate_querystring(LimitQuery)
@json_response(CompanionList)
async def recent(query_args: LimitQuery) -> dict[str, Any]:
    return await lessons.recent_companions(get_state().db, current_user(), query_args.limit)


@bp.get("/<int:lesson_id>")
@login_required
@json_response(LessonOut)
async def get_lesson(lesson_id: int) -> LessonOut:
    return await lessons.get(get_state().db, current_user(), lesson_id)


@bp.get("/<int:lesson_id>/call")
@login_required
async def call_setup(lesson_id: int) -> dict[str, Any]:
    """What the page passes to `vapi.start()`: the assistant for this lesson, in either voice backend, and the
    seconds the lesson has left."""
    state = get_state()
    live = await lessons.get_live_lesson(state.db, lesson_id, current_user().id)
    memory = await recaps.memory_for(state.db, state.settings, live.learner_id, live.companion.id, live.lesson_id)
    return calls.call_setup(state.settings, live, request.host_url, memory)
