"""A lesson's brief: what its companion decides about it (words, voice, length), for either voice backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.lessons import LiveLesson
from server.settings import Settings, TeachingSettings
from server.timeutil import as_utc

if TYPE_CHECKING:
    from server.recaps import Memory


@dataclass(frozen=True)
class LessonBrief:
    """What the tutor says, how it sounds and how long the lesson lasts; the one answer every part uses."""

    lesson_id: int
    learner_id: int
    system_prompt: str
    greeting: str
    goodbye: str
    apology: str
    voice: str
    style: str
    # The lesson's whole length: the companion's duration, within voice.max_lesson_secs.
    max_secs: float
    started_at: datetime
    # Safety screening (server/safety.py): said instead of a flagged tutor reply, and to a learner who says
    # something flagged high.
    redirect: str = ""
    support: str = ""
    # How the companion teaches (server/teaching.py); a socratic tutor's reply that would state the answer to
    # the learner's sum is replaced by `guiding_question` (server/pipeline/socratic.py).
    teaching: str = "explain"
    guiding_question: str = ""

    def seconds_left(self, now: datetime | None = None) -> float:
        """What is left of the lesson: its clock runs from when it started, so a reconnect (a reload, another
        window) goes on with the time left instead of starting over."""
        elapsed = ((now or datetime.now(UTC)) - self.started_at).total_seconds()
        return max(0.0, self.max_secs - max(0.0, elapsed))


def lesson_length_secs(settings: Settings, duration_minutes: int) -> float:
    """The one rule for a lesson's length: its companion's duration, never more than voice.max_lesson_secs."""
    seconds = float(duration_minutes) * 60.0
    cap = settings.voice.max_lesson_secs
    return min(seconds, cap) if cap > 0 else seconds


def teaching_instruction(settings: TeachingSettings, teaching: str, questions: Sequence[str] = ()) -> str:
    """What the companion's teaching style adds to the system prompt (server/teaching.py: the styles); a quiz's
    names its open review questions."""
    if teaching == "socratic":
        return settings.socratic
    if teaching == "quiz":
        if not questions:
            return settings.quiz_without_questions
        listed = "\n".join(f"- {q}" for q in questions[: settings.quiz_questions])
        return settings.quiz.replace("{questions}", listed)
    return settings.explain


def brief_lesson(settings: Settings, live: LiveLesson, memory: Memory | None = None) -> LessonBrief:
    """Turn a live lesson's companion into its prompt, greeting, goodbye, voice and length.

    With `memory` (server/recaps.py: the last recaps with this companion and the learner's facts), the prompt
    carries it and the greeting welcomes the learner back with what the last lesson covered.
    """
    voice = settings.voice
    companion = live.companion
    fields = {"subject": companion.subject, "topic": companion.topic, "style": companion.style, "name": companion.name}
    system_prompt = (
        voice.system_prompt.format(**fields)
        + "\n"
        + teaching_instruction(voice.teaching, companion.teaching, live.review_questions)
    )
    greeting = voice.first_message.format(**fields)
    if memory is not None:
        remembered = memory.prompt(settings.recaps)
        system_prompt = f"{system_prompt}\n{remembered}" if remembered else system_prompt
        greeting = memory.greeting(settings.recaps, fields) or greeting
    return LessonBrief(
        lesson_id=live.lesson_id,
        learner_id=live.learner_id,
        system_prompt=system_prompt,
        greeting=greeting,
        goodbye=voice.goodbye_message.format(**fields),
        apology=voice.apology_message,
        voice=companion.voice,
        style=companion.style,
        max_secs=lesson_length_secs(settings, companion.duration),
        started_at=as_utc(live.started_at),
        redirect=settings.safety.redirect_message.format(**fields),
        support=settings.safety.support_message,
        teaching=companion.teaching,
        guiding_question=voice.teaching.socratic_guiding_question,
    )
