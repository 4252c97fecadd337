"""Recaps after every lesson and the tutor's memory across lessons: what the language model writes from a finished
lesson's transcript (what it covered, what was hard, review questions, and the facts it keeps about the learner),
and what the next lesson with the same companion starts from.

A recap is written off the lesson's path, by one background worker on the app (started and closed with it) that
the lesson's end enqueues. It is only ever built from the stored transcript: a lesson too short to recap is stored
as such without asking the model, and an answer that is not a valid recap is stored as failed, never patched up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from server.accounts import CurrentUser
from server.errors import Conflict, NotFound
from server.pipeline.embedded_llm import BUNDLED_MODEL_NAME
from server.settings import RecapSettings, Settings
from server.store import recaps as store
from server.store.db import Database
from server.timeutil import as_utc

if TYPE_CHECKING:
    from server.pipeline.language_model import LanguageModel

log = logging.getLogger(__name__)

EXTRAS_KEY = "recaps"
Status = Literal["pending", "ready", "too_short", "failed"]

# What the model is asked for: one JSON object, short fields, nothing that the transcript does not say.
RECAP_PROMPT = (
    "You write the recap of a spoken lesson between a tutor and a learner, from its transcript alone. "
    "Never add anything that was not said in it. Answer with one JSON object and nothing else, with these keys: "
    '"covered": a short phrase that completes "Last time we covered ...", naming what the lesson taught; '
    '"hard": one sentence on what the learner found hard or got wrong, or "" if nothing; '
    '"questions": a list of two or three short questions the learner can answer to review the lesson; '
    '"facts": the updated list of at most {max_facts} short facts about the learner that help the next lesson '
    "(their level, their interests, mistakes they keep making): keep the current facts that still hold, drop "
    "the ones the lesson shows wrong, add what the lesson shows."
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_WORD = re.compile(r"[^\W\d_]{4,}")
# A "covered" that repeats this from the instruction is no recap.
_ECHO = "last time we covered"
# "Question 2: What ...?" is the question "What ...?".
_NUMBERED = re.compile(r"^(?:question\s*)?\d+\s*[:.)-]\s*", re.IGNORECASE)
# Shown with a recap that the bundled demonstration model wrote.
DEMO_RECAP_NOTICE = "Written by a small demonstration model: it may be wrong or repeat itself."


class RecapOut(BaseModel):
    status: Status
    covered: str
    hard: str
    questions: list[str]
    model: str | None
    # For the learner: what to make of it ("" for a recap by a real model).
    notice: str
    created_at: datetime


class FactOut(BaseModel):
    id: int
    companion_id: int
    companion_name: str
    text: str
    updated_at: datetime


class FactList(BaseModel):
    facts: list[FactOut]


def recap_out(record: store.RecapRecord) -> RecapOut:
    return RecapOut(
        status=record.status,  # type: ignore[arg-type]
        covered=record.covered,
        hard=record.hard,
        questions=record.questions,
        model=record.model,
        notice=DEMO_RECAP_NOTICE if record.status == "ready" and record.model == BUNDLED_MODEL_NAME else "",
        created_at=as_utc(record.created_at),
    )


def summary(status: str, covered: str) -> str | None:
    """The short recap a lesson list shows: what it covered, the too-short sentence, or nothing yet."""
    return covered if status in ("ready", "too_short") and covered else None


# -- what the model is asked, and what counts as its answer ---------------------------------------------------


def clip_words(text: str, words: int) -> str:
    """The first `words` words of `text` (all of it if shorter), on one line."""
    found = text.split()
    return " ".join(found[:words]) + ("…" if len(found) > words else "")


def too_short(settings: RecapSettings, lines: Sequence[tuple[str, str]]) -> bool:
    """Whether the learner said too little for a recap (fewer utterances or words than configured)."""
    said = [text for role, text in lines if role == "user" and text.strip()]
    return len(said) < settings.min_learner_utterances or sum(len(t.split()) for t in said) < settings.min_learner_words


def transcript_text(lines: Sequence[tuple[str, str]], max_chars: int) -> str:
    """The transcript as the model reads it; a long one keeps its latest lines within `max_chars`."""
    rendered = [f"{'Learner' if role == 'user' else 'Tutor'}: {text.strip()}" for role, text in lines if text.strip()]
    kept: list[str] = []
    used = 0
    for line in reversed(rendered):
        used += len(line) + 1
        if used > max_chars and kept:
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def recap_request(
    settings: RecapSettings,
    topic: str,
    lines: Sequence[tuple[str, str]],
    facts: Sequence[str],
    prompt_chars: int | None = None,
) -> list[dict[str, str]]:
    """The chat messages that ask for a lesson's recap, given its transcript and the learner's current facts;
    with `prompt_chars` (what a small model's context holds), a long transcript keeps only its latest lines."""
    system = RECAP_PROMPT.format(max_facts=settings.memory_facts)
    current = "\n".join(f"- {f}" for f in facts) or "(none yet)"
    head = f"Lesson topic: {topic or 'not given'}\nCurrent facts about the learner:\n{current}\n\nTranscript:\n"
    budget = settings.transcript_max_chars
    if prompt_chars is not None:
        budget = max(200, min(budget, prompt_chars - len(system) - len(head)))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": head + transcript_text(lines, budget)},
    ]


def recap_schema(settings: RecapSettings) -> dict[str, Any]:
    """The JSON schema of a recap answer, which the embedded model's grammar holds every token to."""

    # One line each, of lengths that let the whole answer fit in recaps.max_tokens (about 4 characters a token);
    # a review question is shaped as one.
    def line(least: int, most: int) -> dict[str, Any]:
        return {"type": "string", "pattern": f'^[^"\\\\\\n]{{{least},{most}}}$'}

    question = {"type": "string", "pattern": '^[A-Z][^?"\\\\\\n]{8,110}[?]$'}
    return {
        "type": "object",
        "properties": {
            "covered": line(3, 160),
            "hard": line(0, 160),
            "questions": {"type": "array", "items": question, "minItems": 2, "maxItems": 3},
            "facts": {"type": "array", "items": line(3, 100), "maxItems": max(settings.memory_facts, 0)},
        },
        "required": ["covered", "hard", "questions", "facts"],
    }


@dataclass(frozen=True)
class Recap:
    covered: str
    hard: str
    questions: list[str]
    facts: list[str] | None  # None: the answer said nothing of them, so they stay as they are


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(value.split())[:limit].strip()


def parse_recap(
    settings: RecapSettings, answer: str, lines: Sequence[tuple[str, str]], topic: str = ""
) -> Recap | None:
    """The model's answer as a recap, or None when it is not one: not JSON, nothing covered, fewer than two
    questions, or a "covered" that shares no word with the transcript (made up rather than recapped)."""
    found = _JSON_OBJECT.search(answer)
    try:
        # Not strict: llama.cpp's JSON grammar lets a raw line break into a string (it is folded below).
        data = json.loads(found.group(0), strict=False) if found else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return None
    covered = _text(data.get("covered"), 500)
    hard = _text(data.get("hard", ""), 500)
    raw_questions = data.get("questions")
    if not covered or hard is None or not isinstance(raw_questions, list):
        return None
    if _ECHO in covered.lower():
        return None  # the instruction repeated back, not a recap
    # Questions are questions, each asked once.
    numbered = (_NUMBERED.sub("", q) for q in (_text(q, 300) for q in raw_questions) if q)
    asked = [q for q in numbered if q.endswith("?") and len(q.split()) >= 3]
    questions = list({q.lower(): q for q in reversed(asked)}.values())[::-1][:3]
    if len(questions) < 2:
        return None
    said = {w.lower() for _, text in lines for w in _WORD.findall(text)} | {w.lower() for w in _WORD.findall(topic)}
    if not any(w.lower() in said for w in _WORD.findall(covered)):
        return None
    if hard.lower() == covered.lower():
        hard = ""  # said nothing of its own
    facts: list[str] | None = None
    if isinstance(data.get("facts"), list):
        kept = (_text(x, 300) for x in data["facts"])
        facts = [clip_words(f, settings.fact_words) for f in kept if f and len(f.split()) >= 2]
        facts = [f for f in dict.fromkeys(facts) if f.lower() != covered.lower()][: settings.memory_facts]
    return Recap(covered.rstrip(". "), hard, questions, facts)


# -- memory in the next lesson ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """What a lesson starts from: the last recaps with its companion (newest first) and the learner's facts."""

    recaps: tuple[tuple[str, str], ...] = ()  # (covered, hard)
    facts: tuple[str, ...] = ()

    def prompt(self, settings: RecapSettings) -> str:
        """The lines the system prompt gains ("" when there is nothing to remember)."""
        if not self.recaps and not self.facts:
            return ""
        parts = [settings.memory_intro]
        if self.recaps:
            parts.append("Earlier lessons with this learner, the latest first:")
            for covered, hard in self.recaps:
                line = f"- Covered {clip_words(covered, settings.recap_words)}."
                if hard:
                    line += f" Hard for them: {clip_words(hard, settings.recap_words)}"
                parts.append(line)
        if self.facts:
            parts.append("What you know about the learner:")
            parts.extend(f"- {fact}" for fact in self.facts)
        return "\n".join(parts)

    def greeting(self, settings: RecapSettings, fields: dict[str, str]) -> str | None:
        """The welcome back that names what the last lesson covered (None when no recap was written)."""
        if not self.recaps:
            return None
        covered = clip_words(self.recaps[0][0], settings.greeting_words).rstrip(".… ")
        return settings.welcome_back_message.format(covered=covered, **fields)


async def memory_for(db: Database, settings: Settings, learner_id: int, companion_id: int, lesson_id: int) -> Memory:
    """What the learner's lesson `lesson_id` with this companion starts from (read once, at its start)."""
    config = settings.recaps
    if not config.enabled or (config.memory_recaps == 0 and config.memory_facts == 0):
        return Memory()
    async with db.read() as session:
        recaps = await store.latest_recaps(
            session, learner_id, companion_id, config.memory_recaps, before_lesson=lesson_id
        )
        facts = await store.facts(session, learner_id, companion_id)
    return Memory(
        recaps=tuple((r.covered, r.hard) for r in recaps) if config.memory_recaps else (),
        facts=tuple(f.text for f in facts[: config.memory_facts]),
    )


# -- the learner's facts -----------------------------------------------------------------------------------------


async def facts_of(db: Database, user: CurrentUser, companion_id: int | None) -> FactList:
    async with db.read() as session:
        found = await store.facts(session, user.id, companion_id)
    return FactList(
        facts=[
            FactOut(
                id=f.id,
                companion_id=f.companion_id,
                companion_name=f.companion_name,
                text=f.text,
                updated_at=as_utc(f.updated_at),
            )
            for f in found
        ]
    )


async def forget_fact(db: Database, user: CurrentUser, fact_id: int) -> None:
    """Delete one of the learner's own facts; anyone else's, or none, is a 404."""
    async with db.write() as session:
        if not await store.delete_fact(session, user.id, fact_id):
            raise NotFound("fact_not_found", "No remembered fact with that id.")


# -- the worker ----------------------------------------------------------------------------------------------------


class Recaps:
    """The app's recap writer: a queue of ended lessons and one task that writes their recaps, one at a time (so
    recaps never crowd the language model that live lessons are using). `start` and `close` with the app."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        language_model: Callable[[], LanguageModel | None] = lambda: None,
    ) -> None:
        """`language_model()`: the voice service's language model, the app's own in hosted mode (or None)."""
        self._settings = settings.recaps
        self._db = db
        self._language_model = language_model
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._queued: set[int] = set()
        self._worker: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    async def start(self) -> None:
        """Start the worker, with the recaps that a stopped server left pending."""
        if self.enabled:
            async with self._db.read() as session:
                for lesson_id in await store.pending_lesson_ids(session):
                    self._enqueue(lesson_id)
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="recaps")

    async def lesson_ended(self, lesson_id: int) -> None:
        """A lesson ended: its recap is pending from now on and will be written (once: a later end changes nothing)."""
        if not self.enabled:
            return
        async with self._db.write() as session:
            if await store.get(session, lesson_id) is not None:
                return
            await store.put(session, lesson_id, "pending")
        self._enqueue(lesson_id)

    async def regenerate(self, user: CurrentUser, lesson_id: int) -> RecapOut:
        """Write the learner's own ended lesson's recap again (in the background); returns it as pending."""
        async with self._db.write() as session:
            lesson = await store.lesson_for_recap(session, lesson_id)
            if lesson is None or lesson.learner_id != user.id:
                raise NotFound("lesson_not_found", "No lesson with that id.")
            if not lesson.ended:
                raise Conflict("lesson_not_ended", "The recap is written once the lesson has ended.")
            if not self.enabled:
                raise Conflict("recaps_disabled", "Recaps are turned off on this server.")
            record = await store.put(session, lesson_id, "pending")
        self._enqueue(lesson_id)
        return recap_out(record)

    def _enqueue(self, lesson_id: int) -> None:
        if lesson_id not in self._queued:
            self._queued.add(lesson_id)
            self._queue.put_nowait(lesson_id)

    async def _work(self) -> None:
        while True:
            lesson_id = await self._queue.get()
            self._queued.discard(lesson_id)
            try:
                await self.write(lesson_id)
            except Exception:
                log.exception("recaps: lesson %s: writing its recap failed", lesson_id)
                with contextlib.suppress(Exception):
                    async with self._db.write() as session:
                        await store.put(session, lesson_id, "failed")
            finally:
                self._queue.task_done()

    async def write(self, lesson_id: int) -> Status | None:
        """Write one lesson's pending recap now: too short, ready (with the learner's facts updated) or failed."""
        settings = self._settings
        async with self._db.read() as session:
            found = await store.get(session, lesson_id)
            if found is not None and found.status != "pending":
                return None  # written already (asked twice: at a sweep's end and again as pending at start)
            lesson = await store.lesson_for_recap(session, lesson_id)
            facts = (
                []
                if lesson is None or lesson.companion_id is None
                else await store.facts(session, lesson.learner_id, lesson.companion_id)
            )
        if lesson is None:
            return None
        if too_short(settings, lesson.lines):
            async with self._db.write() as session:
                await store.put(session, lesson_id, "too_short", covered=settings.too_short_message)
            return "too_short"
        answer, model_name = await self._ask(lesson_id, lesson.topic, lesson.lines, [f.text for f in facts])
        recap = None if answer is None else parse_recap(settings, answer, lesson.lines, lesson.topic)
        async with self._db.write() as session:
            if recap is None:
                if answer is not None:
                    log.warning("recaps: lesson %s: the model's answer is not a recap: %.120r", lesson_id, answer)
                await store.put(session, lesson_id, "failed", model=model_name)
                return "failed"
            await store.put(
                session,
                lesson_id,
                "ready",
                covered=recap.covered,
                hard=recap.hard,
                questions=recap.questions,
                model=model_name,
            )
            if recap.facts is not None and lesson.companion_id is not None:
                await store.replace_facts(session, lesson.learner_id, lesson.companion_id, recap.facts)
        log.info("recaps: lesson %s: recap written by %s", lesson_id, model_name)
        return "ready"

    async def _ask(
        self, lesson_id: int, topic: str, lines: Sequence[tuple[str, str]], facts: Sequence[str]
    ) -> tuple[str | None, str | None]:
        """The model's answer and name; (None, name) when it cannot answer now (logged)."""
        model = self._language_model()
        if model is None:
            log.info("recaps: lesson %s: no language model to write its recap", lesson_id)
            return None, None
        settings = self._settings
        await model.ready()  # loaded first, so that the transcript is cut to what its context holds
        messages = recap_request(settings, topic, lines, facts, prompt_chars=model.prompt_chars(settings.max_tokens))
        answer = await model.write(
            f"lesson {lesson_id}'s recap",
            messages,
            max_tokens=settings.max_tokens,
            timeout_secs=settings.timeout_secs,
            schema=recap_schema(settings),
        )
        return answer, model.model_name

    async def idle(self, within: float = 30.0) -> None:
        """Wait until every recap asked for so far is written (tests; shutdown)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)

    async def close(self) -> None:
        """Stop the worker; recaps still pending stay pending and are written when the server starts again."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
