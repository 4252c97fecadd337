"""Vapi's webhook: server messages about hosted lessons, authenticated by the configured secret."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from quart import Blueprint, request
from quart_schema import validate_request

from server import calls, recaps, safety, teaching, vapi
from server.errors import Unauthorized
from server.lesson_recorder import after_lesson
from server.state import get_state
from server.vapi import WebhookIn

log = logging.getLogger(__name__)

bp = Blueprint("vapi", __name__, url_prefix="/api/vapi")

P = ParamSpec("P")
R = TypeVar("R")


def webhook_secret_required(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse a request without the secret before its body is read or validated."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        configured = get_state().settings.vapi.webhook_secret
        if configured is None or not configured.get_secret_value():
            log.warning("Vapi webhook refused: no secret configured (set TUTOR_VAPI__WEBHOOK_SECRET)")
        elif vapi.secret_matches(
            configured, request.headers.get("X-Vapi-Secret"), request.headers.get("Authorization")
        ):
            return await view(*args, **kwargs)
        raise Unauthorized("vapi_unauthorized", "Missing or wrong Vapi webhook secret.")

    return wrapper


@bp.post("/webhook")
@webhook_secret_required
@validate_request(WebhookIn)
async def webhook(data: WebhookIn) -> dict[str, Any]:
    """One Vapi server message: `assistant-request` is answered with the lesson's assistant, the rest stored.

    Answers `{"type", "outcome"}` with outcome "stored", "unchanged" (a retry, or superseded by the call's
    end-of-call report) or "ignored" (a message kind we do not keep); an unknown lesson is a 404.
    """
    state = get_state()
    server_url = calls.webhook_url(state.settings, request.host_url)
    screening = state.extras.get(safety.EXTRAS_KEY)
    on_utterance = screening.hosted_utterance if screening is not None else None
    return await vapi.handle(state.db, state.settings, data.message, server_url, on_utterance, _call_reported)


async def _call_reported(lesson_id: int) -> None:
    """A hosted lesson's whole transcript is in: its recap and quiz judgement are written as a local lesson's."""
    extras = get_state().extras
    await after_lesson(lesson_id, teaching=extras.get(teaching.EXTRAS_KEY), recaps=extras.get(recaps.EXTRAS_KEY))
