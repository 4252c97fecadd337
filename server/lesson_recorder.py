"""Where a live lesson's finished utterances and its end are recorded: the callbacks the pipeline is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server import lessons
from server.lessons import Role
from server.store.db import Database

if TYPE_CHECKING:
    from server.materials import Materials
    from server.pipeline.materials import Retrieve
    from server.pipeline.screening import Screening
    from server.recaps import Recaps
    from server.safety import Safety
    from server.teaching import ReviewJudge


@dataclass(frozen=True)
class LessonRecorder:
    """One lesson's record keeping, as the voice pipeline sees it: it says what happened, never how it is kept."""

    # A finished utterance, the learner's or the tutor's, in the order they were said, with the sources of the
    # teacher's passages a tutor line was given (empty for the learner's, and for lines that drew on none).
    on_utterance: Callable[[Role, str, Sequence[Mapping[str, Any]]], Awaitable[None]]
    # Why the lesson ended (a Vapi endedReason such as "customer-ended-call"); only the first end counts.
    on_ended: Callable[[str], Awaitable[None]]
    # How the lesson's words are screened, and where its flags go (server/safety.py); None: not screened.
    screening: Screening | None = None
    # The teacher's passages for what the learner just said (server/materials.py); None: no retrieval.
    materials: Retrieve | None = None


RecorderFactory = Callable[[int], LessonRecorder]


async def after_lesson(lesson_id: int, *, teaching: ReviewJudge | None, recaps: Recaps | None) -> None:
    """What follows a lesson's end however it ended (a local lesson's pipeline, a hosted call's end-of-call
    report, the sweep after a crash): a quiz's answers are judged and the recap is asked for, both in the
    background. The one place, so that no way of ending a lesson misses either."""
    if teaching is not None:
        teaching.lesson_ended(lesson_id)
    if recaps is not None:
        await recaps.lesson_ended(lesson_id)


def stored_lessons(
    db: Database,
    safety: Safety | None = None,
    *,
    teaching: ReviewJudge | None = None,
    materials: Materials | None = None,
    recaps: Recaps | None = None,
) -> RecorderFactory:
    """Recorders that append to the lesson's stored transcript and store its end, for each lesson id; with
    `safety`, they also screen what is said and store its flags; with `materials`, each learner turn is given the
    best passages of the companion's materials, and the tutor's line is stored with their sources; with `recaps`,
    a lesson's end asks for its recap."""

    def recorder(lesson_id: int) -> LessonRecorder:
        async def on_utterance(role: Role, text: str, sources: Sequence[Mapping[str, Any]] = ()) -> None:
            await lessons.append_transcript(db, lesson_id, role, text, sources=sources)

        async def on_ended(reason: str) -> None:
            await lessons.end_lesson(db, lesson_id, reason)
            # Every end of a local lesson passes here (hang-up, timers, disconnects, errors).
            await after_lesson(lesson_id, teaching=teaching, recaps=recaps)

        screening = safety.screening(lesson_id) if safety is not None else None
        retrieve = materials.retriever(lesson_id) if materials is not None else None
        return LessonRecorder(on_utterance=on_utterance, on_ended=on_ended, screening=screening, materials=retrieve)

    return recorder
