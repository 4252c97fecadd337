"""The signed-in learner's own things: profile and usage, companions, lessons and bookmarks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint

from server import accounts, classes, companions, lessons, teaching
from server.accounts import MeOut
from server.api.auth import current_user, login_required
from server.api.schema import json_response, validate_querystring
from server.classes import MyClasses
from server.companions import CompanionList, CompanionPage
from server.lessons import LessonList
from server.state import get_state
from server.teaching import ProgressOut

bp = Blueprint("me", __name__, url_prefix="/api/me")


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=100)


class PageQuery(ListQuery):
    page: int = Field(default=1, ge=1, le=100_000)


@bp.get("")
@login_required
@json_response(MeOut)
async def me() -> MeOut:
    state = get_state()
    return await accounts.me(state.db, state.settings, current_user().id)


@bp.get("/companions")
@login_required
@validate_querystring(PageQuery)
@json_response(CompanionPage)
async def my_companions(query_args: PageQuery) -> dict[str, Any]:
    return await companions.mine(get_state().db, current_user(), page=query_args.page, limit=query_args.limit)


@bp.get("/lessons")
@login_required
@validate_querystring(ListQuery)
@json_response(LessonList)
async def my_lessons(query_args: ListQuery) -> dict[str, Any]:
    return await lessons.mine(get_state().db, current_user(), query_args.limit)


@bp.get("/bookmarks")
@login_required
@validate_querystring(ListQuery)
@json_response(CompanionList)
async def my_bookmarks(query_args: ListQuery) -> dict[str, Any]:
    return await companions.bookmarked(get_state().db, current_user(), query_args.limit)


@bp.get("/classes")
@login_required
@json_response(MyClasses)
async def my_classes() -> MyClasses:
    """The learner's classes and their companions, which the library shows first."""
    return await classes.mine(get_state().db, current_user())


@bp.delete("/classes/<int:class_id>")
@login_required
async def leave_class(class_id: int) -> tuple[str, int]:
    await classes.leave(get_state().db, current_user(), class_id)
    return "", 204


@bp.get("/progress")
@login_required
@json_response(ProgressOut)
async def my_progress() -> ProgressOut:
    """Per companion, the review questions of my past recaps and which I have answered right in a quiz."""
    return await teaching.progress(get_state().db, current_user())
