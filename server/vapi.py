"""Hosted lessons: Vapi's server messages, the lesson each names, and what each one stores."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from server import calls, lessons, recaps
from server.errors import Conflict, NotFound
from server.lessons import Role
from server.settings import Settings
from server.store import lessons as store
from server.store.db import Database
from server.store.models import Lesson
from server.timeutil import as_utc

# "stored": the message changed the lesson; "unchanged": already stored, or superseded by the end-of-call
# report (a retry, or a message arriving late); "ignored": a kind of message we do not keep.
Outcome = Literal["stored", "unchanged", "ignored"]
# (lesson id, role, text) of a live utterance just stored.
OnUtterance = Callable[[int, str, str], None]
OnReported = Callable[[int], Awaitable[None]]

MAX_ID = 2**63 - 1
# lessons.length_seconds is a 32-bit integer.
MAX_LENGTH = 2**31 - 1
# Vapi's end reasons are open-ended; the column holds 64 characters.
REASON_LENGTH = 64
UNKNOWN_REASON = "unknown"
# Roles in a report's artifact.messages; "system", "tool_calls" and "tool_call_result" are not transcript.
REPORT_ROLES: dict[str, Role] = {"user": "user", "bot": "assistant", "assistant": "assistant"}


class _Open(BaseModel):
    # Vapi adds fields to its messages over time: unknown ones are accepted and left alone, never refused.
    model_config = ConfigDict(extra="allow")


class CallIn(_Open):
    """The part of Vapi's Call object we read."""

    id: str | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] | None = None
    assistantOverrides: dict[str, Any] | None = None
    assistant: dict[str, Any] | None = None
    startedAt: datetime | None = None
    endedAt: datetime | None = None
    endedReason: str | None = None


class AssistantIn(_Open):
    metadata: dict[str, Any] | None = None


class ArtifactMessageIn(_Open):
    """One entry of a call's message history (Vapi's UserMessage / BotMessage / SystemMessage ...)."""

    role: str | None = None
    message: str | None = None
    # Milliseconds since the Unix epoch.
    time: float | None = None
    secondsFromStart: float | None = None


class ArtifactIn(_Open):
    messages: list[ArtifactMessageIn] | None = None
    transcript: str | None = None


class ServerMessageIn(_Open):
    """One server message; which fields are set depends on `type`."""

    type: str = Field(min_length=1, max_length=200)
    call: CallIn | None = None
    assistant: AssistantIn | None = None
    # Milliseconds since the Unix epoch (older messages: an ISO 8601 string).
    timestamp: float | str | None = None
    # status-update
    status: str | None = None
    endedReason: str | None = None
    # transcript
    role: str | None = None
    transcriptType: str | None = None
    transcript: str | None = None
    # end-of-call-report
    artifact: ArtifactIn | None = None
    # Reports from before `artifact` existed carried the message history at the top level.
    messages: list[ArtifactMessageIn] | None = None
    durationSeconds: float | None = None
    startedAt: datetime | None = None
    endedAt: datetime | None = None


class WebhookIn(_Open):
    """Every server message arrives as `{"message": {...}}`."""

    message: ServerMessageIn


class WebhookAck(BaseModel):
    type: str
    outcome: Outcome


def secret_matches(configured: SecretStr | None, x_vapi_secret: str | None, authorization: str | None) -> bool:
    """Whether a request carries the webhook secret, as `X-Vapi-Secret` or `Authorization: Bearer`.

    No configured secret refuses everything: an open webhook would let anyone write any lesson's transcript.
    """
    secret = configured.get_secret_value().encode() if configured is not None else b""
    if not secret:
        return False
    offered = []
    if x_vapi_secret:
        offered.append(x_vapi_secret.strip())
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            offered.append(token.strip())
    # compare_digest on every candidate, so the time taken says nothing about how much of a guess was right.
    matches = [hmac.compare_digest(secret, candidate.encode()) for candidate in offered]
    return any(matches)


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters; nothing a speaker says contains one.
    return text.replace("\x00", "").strip()


def _utc(value: datetime | None) -> datetime | None:
    """A parsed time in UTC; one that UTC cannot express (year 1 or 9999 at an offset) counts as absent."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        return None


def _from_epoch_ms(value: float | str | None) -> datetime | None:
    """Vapi's millisecond timestamps (or an ISO string); anything unreadable is treated as absent."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return _utc(datetime.fromisoformat(value))
        if not math.isfinite(value):
            return None
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _seconds(value: float | None) -> int | None:
    # A week bounds any real call; the column is a 32-bit integer.
    if value is None or not math.isfinite(value) or not 0 <= value <= 7 * 86400:
        return None
    return round(value)


def _length(started: datetime, ended: datetime) -> int:
    return min(MAX_LENGTH, max(0, round((ended - started).total_seconds())))


def _as_lesson_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= MAX_ID:
        return value
    return None


def named_lesson_id(message: ServerMessageIn) -> int | None:
    """The lesson id in the call's metadata: the assistant we built carries it, wherever Vapi echoes it."""
    sources: list[Any] = []
    if message.call is not None:
        call = message.call
        sources.append(call.metadata)
        sources.append((call.assistantOverrides or {}).get("metadata"))
        sources.append((call.assistant or {}).get("metadata"))
    if message.assistant is not None:
        sources.append(message.assistant.metadata)
    for metadata in sources:
        if isinstance(metadata, dict) and "lessonId" in metadata:
            lesson_id = _as_lesson_id(metadata["lessonId"])
            if lesson_id is None:
                raise NotFound("lesson_not_found", "The call's metadata.lessonId is not a lesson id.")
            return lesson_id
    return None


async def _lesson_for_call(session: AsyncSession, message: ServerMessageIn) -> tuple[Lesson, bool]:
    """Lock the lesson a message belongs to and tie the call to it on first sight (then True)."""
    call_id = _clean(message.call.id or "") if message.call is not None else None
    lesson_id = named_lesson_id(message)
    lesson: Lesson | None = None
    if lesson_id is not None:
        lesson = await store.lock(session, lesson_id)
    elif call_id:
        lesson = await store.lock_by_call(session, call_id)
    if lesson is None:
        raise NotFound("lesson_not_found", "No lesson matches this call (its metadata.lessonId names none of ours).")
    if call_id:
        if lesson.external_call_id is None:
            holder = await store.lesson_id_for_call(session, call_id)
            if holder is not None and holder != lesson.id:
                raise Conflict("call_mismatch", "This call is already recorded against another lesson.")
            await store.tie_call(session, lesson, call_id)
            return lesson, True
        if lesson.external_call_id != call_id:
            raise Conflict("call_mismatch", "This lesson is already recorded against another call.")
    return lesson, False


async def _status_update(db: Database, message: ServerMessageIn) -> Outcome:
    """Any status ties the call to its lesson (the lesson has started); "ended" ends it, once."""
    async with db.write() as session:
        lesson, changed = await _lesson_for_call(session, message)
        # Nothing here reopens a lesson, so an "in-progress" delivered after "ended" changes nothing.
        if message.status == "ended" and lesson.ended_at is None and lesson.call_reported_at is None:
            call = message.call or CallIn()
            ended_at = _utc(call.endedAt) or datetime.now(UTC)
            started_at = _utc(call.startedAt) or as_utc(lesson.started_at)
            reason = _clean(message.endedReason or call.endedReason or "") or UNKNOWN_REASON
            await store.close(session, lesson, ended_at, _length(started_at, ended_at), reason[:REASON_LENGTH])
            changed = True
    return "stored" if changed else "unchanged"


def _is_final_transcript(message: ServerMessageIn) -> bool:
    if message.transcriptType is not None:
        return message.transcriptType == "final"
    # The final-only message type names its transcript type in the type itself.
    return message.type.startswith("transcript[") and "final" in message.type


async def _transcript(db: Database, message: ServerMessageIn, on_stored: OnUtterance | None) -> Outcome:
    """Append a final utterance as it happens; the same delivery twice is stored once."""
    text = _clean(message.transcript or "")
    if not _is_final_transcript(message) or message.role not in ("user", "assistant") or not text:
        return "ignored"
    role: Role = "user" if message.role == "user" else "assistant"
    # A retry is the same message, timestamp included. Without a timestamp, the same words from the same
    # speaker count as one (harmless: the end-of-call report rebuilds the transcript anyway).
    digest = hashlib.sha256(f"{message.timestamp}|{role}|{text}".encode()).hexdigest()[:40]
    external_id = f"transcript:{digest}"
    async with db.write() as session:
        lesson, _ = await _lesson_for_call(session, message)
        if lesson.call_reported_at is not None:
            return "unchanged"
        if await store.has_external_entry(session, lesson.id, external_id):
            return "unchanged"
        at = _from_epoch_ms(message.timestamp) or datetime.now(UTC)
        await store.append_entry(session, lesson.id, role, text, at=at, external_id=external_id)
        lesson_id = lesson.id
    if on_stored is not None:
        on_stored(lesson_id, role, text)
    return "stored"


@dataclass(frozen=True)
class _Utterance:
    role: Role
    text: str
    at: datetime


def _report_transcript(message: ServerMessageIn, call_started: datetime | None) -> list[_Utterance] | None:
    """The call's utterances from the report's message history; None when the report carries none."""
    history = message.artifact.messages if message.artifact is not None else None
    if history is None:
        history = message.messages
    if history is None:
        return None
    utterances = []
    fallback = datetime.now(UTC)
    for item in history:
        role = REPORT_ROLES.get(item.role or "")
        text = _clean(item.message or "")
        if role is None or not text:
            continue
        at = _from_epoch_ms(item.time)
        offset = item.secondsFromStart if _seconds(item.secondsFromStart) is not None else None
        if at is None and call_started is not None and offset is not None:
            try:
                at = call_started + timedelta(seconds=offset)
            except OverflowError:
                at = None
        utterances.append(_Utterance(role, text, at or fallback))
    return utterances


async def _end_of_call_report(db: Database, message: ServerMessageIn) -> tuple[Outcome, int]:
    """Store the report as the lesson's record: transcript, length and end reason; only the first counts.
    Returns what it did and the lesson's id."""
    call = message.call or CallIn()
    started = _utc(message.startedAt) or _utc(call.startedAt)
    utterances = _report_transcript(message, started)
    async with db.write() as session:
        lesson, _ = await _lesson_for_call(session, message)
        if lesson.call_reported_at is not None:
            return "unchanged", lesson.id
        if utterances is not None:
            # The report is the whole conversation: it replaces what the live transcript events stored, so
            # an utterance that came both ways is kept once.
            entries = [
                store.NewEntry(u.role, u.text, u.at, external_id=f"report:{position}")
                for position, u in enumerate(utterances, start=1)
            ]
            await store.replace_transcript(session, lesson.id, entries)
        ended_at = _utc(message.endedAt) or _utc(call.endedAt) or _utc(lesson.ended_at) or datetime.now(UTC)
        length = _seconds(message.durationSeconds)
        if length is None:
            length = _length(started or as_utc(lesson.started_at), ended_at)
        reason = _clean(message.endedReason or call.endedReason or "") or lesson.end_reason or UNKNOWN_REASON
        await store.close(session, lesson, ended_at, length, reason[:REASON_LENGTH], reported_at=datetime.now(UTC))
    return "stored", lesson.id


async def assistant_for_call(
    db: Database, settings: Settings, message: ServerMessageIn, server_url: str | None
) -> dict[str, Any]:
    """The assistant for the lesson an `assistant-request` names (the same one the page would start)."""
    lesson_id = named_lesson_id(message)
    if lesson_id is None:
        raise NotFound("lesson_not_found", "The call's metadata names no lesson (metadata.lessonId).")
    live = await lessons.get_call_lesson(db, lesson_id)
    memory = await recaps.memory_for(db, settings, live.learner_id, live.companion.id, live.lesson_id)
    return calls.build_assistant(settings, live, server_url, memory)


async def handle(
    db: Database,
    settings: Settings,
    message: ServerMessageIn,
    server_url: str | None = None,
    on_utterance: OnUtterance | None = None,
    on_reported: OnReported | None = None,
) -> dict[str, Any]:
    """Apply one server message to its lesson and say what it did; unknown kinds are acknowledged only.

    `on_utterance(lesson_id, role, text)` is told of each live utterance stored (the safety screening), and
    `on_reported(lesson_id)` of a call's first end-of-call report stored (its recap is written from it)."""
    kind = message.type
    outcome: Outcome
    if kind == "assistant-request":
        return {"assistant": await assistant_for_call(db, settings, message, server_url)}
    if kind == "status-update":
        outcome = await _status_update(db, message)
    elif kind == "transcript" or kind.startswith("transcript["):
        outcome = await _transcript(db, message, on_utterance)
    elif kind == "end-of-call-report":
        outcome, lesson_id = await _end_of_call_report(db, message)
        if outcome == "stored" and on_reported is not None:
            await on_reported(lesson_id)
    else:
        outcome = "ignored"
    return WebhookAck(type=kind, outcome=outcome).model_dump()
