"""Companion routes: the library with search and filters, building, editing, bookmarks, starting lessons."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from server import bookmarks, companions, lessons
from server.api import voices
from server.api.auth import current_user, login_required
from server.api.schema import json_response, validate_querystring
from server.companions import CompanionIn, CompanionOut, CompanionPage, CompanionPatch, Sort, Subject
from server.instances import InstanceKeeper
from server.lessons import LessonOut
from server.state import get_state

bp = Blueprint("companions", __name__, url_prefix="/api/companions")


class CompanionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Subject | None = None
    topic: str | None = Field(default=None, max_length=200)
    page: int = Field(default=1, ge=1, le=100_000)
    limit: int = Field(default=12, ge=1, le=100)
    sort: Sort = "recent"
    # Only companions that have had lessons: home's "Popular" list (the library's sort keeps every companion).
    taught: bool = False


@bp.get("")
@login_required
@validate_querystring(CompanionQuery)
@json_response(CompanionPage)
async def list_companions(query_args: CompanionQuery) -> dict[str, Any]:
    return await companions.list_page(
        get_state().db,
        current_user(),
        subject=query_args.subject,
        topic=query_args.topic,
        page=query_args.page,
        limit=query_args.limit,
        sort=query_args.sort,
        taught=query_args.taught,
    )


@bp.post("")
@login_required
@validate_request(CompanionIn)
@validate_response(CompanionOut, 201)
async def create_companion(data: CompanionIn) -> tuple[CompanionOut, int]:
    state = get_state()
    return await companions.create(state.db, state.settings, current_user(), data, voices.installed()), 201


@bp.get("/<int:companion_id>")
@login_required
@json_response(CompanionOut)
async def get_companion(companion_id: int) -> dict[str, Any]:
    return await companions.get(get_state().db, current_user(), companion_id)


@bp.patch("/<int:companion_id>")
@login_required
@validate_request(CompanionPatch)
@validate_response(CompanionOut)
async def update_companion(companion_id: int, data: CompanionPatch) -> CompanionOut:
    return await companions.update(get_state().db, current_user(), companion_id, data, voices.installed())


@bp.delete("/<int:companion_id>")
@login_required
async def delete_companion(companion_id: int) -> tuple[str, int]:
    """Take the companion out of the library: archived if anyone had a lesson with it, else erased."""
    await companions.delete(get_state().db, current_user(), companion_id)
    return "", 204


@bp.put("/<int:companion_id>/bookmark")
@login_required
async def add_bookmark(companion_id: int) -> tuple[str, int]:
    await bookmarks.add(get_state().db, current_user(), companion_id)
    return "", 204


@bp.delete("/<int:companion_id>/bookmark")
@login_required
async def remove_bookmark(companion_id: int) -> tuple[str, int]:
    await bookmarks.remove(get_state().db, current_user(), companion_id)
    return "", 204


@bp.post("/<int:companion_id>/lessons")
@login_required
@validate_response(LessonOut, 201)
async def start_lesson(companion_id: int) -> tuple[LessonOut, int]:
    """Record a lesson within the plan (403 when full, 409 `companion_archived` for an archived companion, 503
    `llm_unavailable` while no language model answers)."""
    state = get_state()
    holder = InstanceKeeper.holder_id(state.extras)
    # Hosted lessons (no local voice service) answer from the hosted provider's model.
    ready = state.voice is None or (await state.voice.tutor_status()).available
    lesson = await lessons.start(
        state.db, state.settings, current_user(), companion_id, holder=holder, tutor_can_answer=ready
    )
    return lesson, 201
