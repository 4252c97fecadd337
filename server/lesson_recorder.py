"""Where a live lesson's finished utterances and its end are recorded: the callbacks the pipeline is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server import lessons
from server.lessons import Role
from server.store.db import Database

if TYPE_CHECKING:
    from server.pipeline.screening import Screening
    from server.safety import Safety


@dataclass(frozen=True)
class LessonRecorder:
    """One lesson's record keeping, as the voice pipeline sees it: it says what happened, never how it is kept."""

    # A finished utterance, the learner's or the tutor's, in the order they were said.
    on_utterance: Callable[[Role, str], Awaitable[None]]
    # Why the lesson ended (a Vapi endedReason such as "customer-ended-call"); only the first end counts.
    on_ended: Callable[[str], Awaitable[None]]
    # How the lesson's words are screened, and where its flags go (server/safety.py); None: not screened.
    screening: Screening | None = None


RecorderFactory = Callable[[int], LessonRecorder]


def stored_lessons(db: Database, safety: Safety | None = None) -> RecorderFactory:
    """Recorders that append to the lesson's stored transcript and store its end, for each lesson id; with
    `safety`, they also screen what is said and store its flags."""

    def recorder(lesson_id: int) -> LessonRecorder:
        async def on_utterance(role: Role, text: str) -> None:
            await lessons.append_transcript(db, lesson_id, role, text)

        async def on_ended(reason: str) -> None:
            await lessons.end_lesson(db, lesson_id, reason)

        screening = safety.screening(lesson_id) if safety is not None else None
        return LessonRecorder(on_utterance=on_utterance, on_ended=on_ended, screening=screening)

    return recorder
