"""Class routes: a teacher's classes, roster, learners' lessons and companions; a learner joining with a code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from server import classes
from server.api.auth import TEACHERS, current_user, login_required, role_required
from server.api.schema import json_response, validate_querystring
from server.classes import ClassDeleted, ClassDetail, ClassList, ClassOut, Joined, RosterRow
from server.lessons import LessonOut
from server.state import get_state

bp = Blueprint("classes", __name__, url_prefix="/api/classes")


class ClassIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)


class LearnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: str = Field(min_length=3, max_length=320)


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str = Field(min_length=1, max_length=32)


class DeleteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: bool = False


class LessonsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=100)


class LearnerLessons(BaseModel):
    lessons: list[LessonOut]


@bp.get("")
@role_required(*TEACHERS)
@json_response(ClassList)
async def list_classes() -> ClassList:
    return await classes.list_classes(get_state().db, current_user())


@bp.post("")
@validate_request(ClassIn)
@role_required(*TEACHERS)
@validate_response(ClassOut, 201)
async def create_class(data: ClassIn) -> tuple[ClassOut, int]:
    state = get_state()
    return await classes.create(state.db, state.settings, current_user(), data.name), 201


@bp.post("/join")
@validate_request(JoinIn)
@login_required
@validate_response(Joined)
async def join(data: JoinIn) -> Joined:
    return Joined(joined=await classes.join(get_state().db, current_user(), data.code))


@bp.get("/<int:class_id>")
@role_required(*TEACHERS)
@json_response(ClassDetail)
async def get_class(class_id: int) -> ClassDetail:
    state = get_state()
    return await classes.detail(state.db, state.settings, current_user(), class_id)


@bp.patch("/<int:class_id>")
@validate_request(ClassIn)
@role_required(*TEACHERS)
@validate_response(ClassOut)
async def rename_class(class_id: int, data: ClassIn) -> ClassOut:
    return await classes.rename(get_state().db, current_user(), class_id, data.name)


@bp.delete("/<int:class_id>")
@role_required(*TEACHERS)
@validate_querystring(DeleteQuery)
@validate_response(ClassDeleted)
async def delete_class(class_id: int, query_args: DeleteQuery) -> ClassDeleted:
    return await classes.delete(get_state().db, current_user(), class_id, confirm=query_args.confirm)


@bp.post("/<int:class_id>/join-code")
@role_required(*TEACHERS)
@validate_response(ClassOut)
async def new_join_code(class_id: int) -> ClassOut:
    state = get_state()
    return await classes.new_join_code(state.db, state.settings, current_user(), class_id)


@bp.post("/<int:class_id>/learners")
@validate_request(LearnerIn)
@role_required(*TEACHERS)
@validate_response(RosterRow, 201)
async def add_learner(class_id: int, data: LearnerIn) -> tuple[RosterRow, int]:
    state = get_state()
    return await classes.add_learner(state.db, state.settings, current_user(), class_id, data.email), 201


@bp.delete("/<int:class_id>/learners/<int:learner_id>")
@role_required(*TEACHERS)
async def remove_learner(class_id: int, learner_id: int) -> tuple[str, int]:
    await classes.remove_learner(get_state().db, current_user(), class_id, learner_id)
    return "", 204


@bp.get("/<int:class_id>/learners/<int:learner_id>/lessons")
@role_required(*TEACHERS)
@validate_querystring(LessonsQuery)
@json_response(LearnerLessons)
async def learner_lessons(class_id: int, learner_id: int, query_args: LessonsQuery) -> dict[str, Any]:
    return await classes.learner_lessons(get_state().db, current_user(), class_id, learner_id, query_args.limit)


@bp.get("/<int:class_id>/lessons/<int:lesson_id>")
@role_required(*TEACHERS)
@json_response(LessonOut)
async def read_lesson(class_id: int, lesson_id: int) -> LessonOut:
    return await classes.read_lesson(get_state().db, current_user(), class_id, lesson_id)


@bp.put("/<int:class_id>/companions/<int:companion_id>")
@role_required(*TEACHERS)
async def assign_companion(class_id: int, companion_id: int) -> tuple[str, int]:
    await classes.assign_companion(get_state().db, current_user(), class_id, companion_id)
    return "", 204


@bp.delete("/<int:class_id>/companions/<int:companion_id>")
@role_required(*TEACHERS)
async def unassign_companion(class_id: int, companion_id: int) -> tuple[str, int]:
    await classes.unassign_companion(get_state().db, current_user(), class_id, companion_id)
    return "", 204
