"""The Vapi-shaped messages a live lesson sends the page on its data channel (what `@vapi-ai/web` emits)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Message = dict[str, Any]


def transcript_message(role: str, text: str, final: bool, sources: Sequence[Mapping[str, Any]] = ()) -> Message:
    """`sources`: the teacher's passages a final tutor line drew on (not one of Vapi's fields; the page shows them)."""
    message: Message = {
        "type": "transcript",
        "role": role,
        "transcriptType": "final" if final else "partial",
        "transcript": text,
    }
    if sources:
        message["sources"] = [dict(s) for s in sources]
    return message


def speech_message(role: str, started: bool) -> Message:
    return {"type": "speech-update", "status": "started" if started else "stopped", "role": role}


def status_message(status: str, ended_reason: str | None = None) -> Message:
    message: Message = {"type": "status-update", "status": status}
    if ended_reason:
        message["endedReason"] = ended_reason
    return message


def error_message(code: str, text: str) -> Message:
    return {"type": "error", "error": {"code": code, "message": text}}


def silence_warning_message(seconds_left: float) -> Message:
    """Not one of Vapi's types (its SDK passes unknown ones on to the page as they are)."""
    return {"type": "silence-warning", "secondsLeft": math.ceil(seconds_left)}
