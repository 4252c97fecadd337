"""Live lesson signalling: the learner's WebRTC offer, trickled ICE candidates, and hanging up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from server import lessons, recaps
from server.api.auth import current_user, login_required
from server.errors import ServiceUnavailable
from server.instances import InstanceKeeper
from server.lesson_brief import brief_lesson
from server.lessons import LessonOut
from server.state import get_state

if TYPE_CHECKING:
    from server.pipeline.service import VoiceService

bp = Blueprint("voice", __name__)

HANG_UP = "customer-ended-call"


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sdp: str = Field(min_length=1, max_length=200_000)
    type: str = Field(default="offer", max_length=20)
    # Set when the page renegotiates an existing connection.
    pc_id: str | None = Field(default=None, max_length=200)


class AnswerOut(BaseModel):
    sdp: str
    type: Literal["answer"]
    pc_id: str


class IceCandidateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Empty = end of candidates.
    candidate: str = Field(default="", max_length=2000)
    sdpMid: str | None = Field(default=None, max_length=100)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)


class CandidatesIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pc_id: str = Field(min_length=1, max_length=200)
    candidates: list[IceCandidateIn] = Field(max_length=100)


def _voice_service() -> VoiceService:
    voice = get_state().voice
    if voice is None:
        raise ServiceUnavailable("voice_backend_not_local", 'Live lessons over WebRTC need voice.backend = "local".')
    return voice


@bp.post("/api/lessons/<int:lesson_id>/offer")
@login_required
@validate_request(OfferIn)
@validate_response(AnswerOut)
async def offer(lesson_id: int, data: OfferIn) -> AnswerOut:
    """Answer the learner's offer and start the lesson's pipeline; only the lesson's learner may connect."""
    state = get_state()
    # The process that answers the offer runs the pipeline, so it holds the lesson from now on.
    holder = InstanceKeeper.holder_id(state.extras)
    live = await lessons.get_live_lesson(state.db, lesson_id, current_user().id, holder=holder)
    # What the lesson starts from (its last recaps with the companion, the learner's facts): read once, here.
    memory = await recaps.memory_for(state.db, state.settings, live.learner_id, live.companion.id, live.lesson_id)
    brief = brief_lesson(state.settings, live, memory)
    answer = await _voice_service().offer(brief, data.sdp, data.type, data.pc_id)
    return AnswerOut(sdp=answer["sdp"], type="answer", pc_id=answer["pc_id"])


@bp.patch("/api/lessons/<int:lesson_id>/offer")
@login_required
@validate_request(CandidatesIn)
async def add_candidates(lesson_id: int, data: CandidatesIn) -> tuple[str, int]:
    state = get_state()
    await lessons.get_live_lesson(state.db, lesson_id, current_user().id)
    await _voice_service().add_ice_candidates(lesson_id, data.pc_id, [c.model_dump() for c in data.candidates])
    return "", 204


@bp.post("/api/lessons/<int:lesson_id>/end")
@login_required
@validate_response(LessonOut)
async def end(lesson_id: int) -> LessonOut:
    """Hang up: stop the lesson's pipeline and store its end (idempotent); returns the lesson."""
    state = get_state()
    user = current_user()
    lesson = await lessons.get(state.db, user, lesson_id)  # 404 for other learners' lessons
    if lesson.ended_at is None:
        if state.voice is not None:
            await state.voice.end(lesson_id, HANG_UP)
        # Also covers a lesson whose pipeline lives nowhere (never connected, or another process).
        await lessons.end_lesson(state.db, lesson_id, HANG_UP)
    return await lessons.get(state.db, user, lesson_id)
