"""A lesson's call set-up: the assistant (Vapi's JSON shape) built from its companion, for either voice backend."""

from __future__ import annotations

from typing import Any

from server import voices
from server.errors import ServiceUnavailable
from server.lesson_brief import brief_lesson
from server.lessons import LiveLesson
from server.recaps import Memory
from server.settings import Settings

WEBHOOK_PATH = "/api/vapi/webhook"
# The server messages our webhook stores. Plain "transcript" (partials are dropped on arrival): Vapi's docs
# and SDKs quote the final-only variant differently, and a value Vapi refuses would fail the call's start.
SERVER_MESSAGES = ["status-update", "transcript", "end-of-call-report"]
# Vapi's accepted range for silenceTimeoutSeconds.
VAPI_SILENCE_RANGE = (10, 3600)


def webhook_url(settings: Settings, request_root: str | None = None) -> str | None:
    """Where Vapi sends a call's server messages: the configured public address, else the one asked on."""
    root = settings.server.public_url or request_root
    return f"{root.rstrip('/')}{WEBHOOK_PATH}" if root else None


def build_assistant(
    settings: Settings, live: LiveLesson, server_url: str | None = None, memory: Memory | None = None
) -> dict[str, Any]:
    """The assistant for one lesson; in local mode the same shape names our own local stages. With `memory`
    (the last recaps with the companion, the learner's facts), its prompt and greeting start from them.

    It goes to the learner's browser, so it never holds a secret: Vapi proves itself to our webhook with the
    secret configured on Vapi's side (the assistant's or organisation's server URL credential, sent as
    `X-Vapi-Secret` or `Authorization: Bearer`), never with anything in here.
    """
    companion = live.companion
    brief = brief_lesson(settings, live, memory)
    # The companion's voice (or, for a legacy "male"/"female", the one its voice x style entry names).
    spoken, _ = voices.catalogue(settings).speaking(brief.voice, brief.style)
    hosted = settings.voice.backend == "vapi"
    if hosted:
        vapi = settings.vapi
        voice_id = spoken.provider_voice
        if not voice_id:
            raise ServiceUnavailable(
                "vapi_voice_missing", "No Vapi voice is configured: set vapi.voices in config.toml."
            )
        transcriber = {
            "provider": vapi.transcriber_provider,
            "model": vapi.transcriber_model,
            "language": "en",
        }
        voice: dict[str, Any] = {"provider": vapi.voice_provider, "voiceId": voice_id}
        model: dict[str, Any] = {"provider": vapi.model_provider, "model": vapi.model}
    else:
        stt, tts, llm = settings.voice.stt, settings.voice.tts, settings.voice.llm
        transcriber = {
            "provider": stt.provider,
            "model": stt.model or ("tiny.en" if stt.provider == "whisper" else "whisper-1"),
            "language": stt.language,
        }
        voice = {"provider": tts.provider, "voiceId": spoken.provider_voice}
        model = {"provider": "openai-compatible", "model": llm.model}
    model["messages"] = [{"role": "system", "content": brief.system_prompt}]
    assistant: dict[str, Any] = {
        "name": companion.name[:40],
        "firstMessage": brief.greeting,
        "transcriber": transcriber,
        "voice": voice,
        "model": model,
        # Vapi counts it from the call's start; a hosted call is not reconnected, so it gets the whole length.
        "maxDurationSeconds": int(brief.max_secs),
        "metadata": {"lessonId": live.lesson_id, "companionId": companion.id},
    }
    if hosted:
        low, high = VAPI_SILENCE_RANGE
        assistant["endCallMessage"] = brief.goodbye
        assistant["silenceTimeoutSeconds"] = round(min(max(settings.voice.silence_timeout_secs, low), high))
        assistant["serverMessages"] = list(SERVER_MESSAGES)
    if server_url:
        assistant["serverUrl"] = server_url
        if hosted and settings.vapi.server_credential_id:
            # A reference to the credential kept at Vapi (it holds our webhook secret), never the secret itself:
            # this JSON goes to the browser.
            assistant["server"] = {"url": server_url, "credentialId": settings.vapi.server_credential_id}
    return assistant


def call_setup(
    settings: Settings, live: LiveLesson, request_root: str | None = None, memory: Memory | None = None
) -> dict[str, Any]:
    """What the page hands its voice client: the backend, Vapi's public key (hosted mode), the assistant, and
    the seconds the lesson has left, which the page counts down.

    `request_root` is the address the page asked on: a hosted call's webhook goes there unless server.public_url
    is set (behind a proxy the request's host may be an internal one).
    """
    hosted = settings.voice.backend == "vapi"
    if hosted and not settings.vapi.public_key:
        raise ServiceUnavailable(
            "vapi_not_configured", "Hosted voice is on, but vapi.public_key is not set in config.toml."
        )
    server_url = webhook_url(settings, request_root) if hosted else None
    return {
        "backend": settings.voice.backend,
        "public_key": settings.vapi.public_key if hosted else "",
        "assistant": build_assistant(settings, live, server_url, memory),
        "seconds_left": round(brief_lesson(settings, live).seconds_left(), 1),
    }
