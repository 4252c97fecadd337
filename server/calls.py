"""A lesson's call set-up: the assistant (Vapi's JSON shape) built from its companion, for either voice backend."""

from __future__ import annotations

from typing import Any

from server.lessons import CompanionView, LiveLesson
from server.settings import Settings


def system_prompt(settings: Settings, companion: CompanionView) -> str:
    return settings.voice.system_prompt.format(
        name=companion.name, subject=companion.subject, topic=companion.topic, style=companion.style
    )


def first_message(settings: Settings, companion: CompanionView) -> str:
    return settings.voice.first_message.format(
        name=companion.name, subject=companion.subject, topic=companion.topic, style=companion.style
    )


def build_assistant(settings: Settings, live: LiveLesson, server_url: str | None = None) -> dict[str, Any]:
    """The assistant for one lesson; in local mode the same shape names our own local stages."""
    companion = live.companion
    slot = f"{companion.voice}.{companion.style}"
    if settings.voice.backend == "vapi":
        vapi = settings.vapi
        transcriber = {
            "provider": vapi.transcriber_provider,
            "model": vapi.transcriber_model,
            "language": "en",
        }
        voice: dict[str, Any] = {"provider": vapi.voice_provider, "voiceId": vapi.voices.get(slot, "")}
        model: dict[str, Any] = {"provider": vapi.model_provider, "model": vapi.model}
    else:
        stt, tts, llm = settings.voice.stt, settings.voice.tts, settings.voice.llm
        transcriber = {"provider": stt.provider, "model": stt.model or "tiny.en", "language": stt.language}
        local_voice = tts.voices.get(slot)
        voice = {
            "provider": tts.provider,
            "voiceId": local_voice.voice if local_voice else "en_US-joe-medium",
        }
        model = {"provider": "openai-compatible", "model": llm.model}
    model["messages"] = [{"role": "system", "content": system_prompt(settings, companion)}]
    assistant: dict[str, Any] = {
        "name": companion.name[:40],
        "firstMessage": first_message(settings, companion),
        "transcriber": transcriber,
        "voice": voice,
        "model": model,
        "maxDurationSeconds": companion.duration * 60,
        "metadata": {"lessonId": live.lesson_id, "companionId": companion.id},
    }
    if server_url:
        assistant["serverUrl"] = server_url
    return assistant


def call_setup(settings: Settings, live: LiveLesson, server_url: str | None = None) -> dict[str, Any]:
    return {
        "backend": settings.voice.backend,
        "public_key": settings.vapi.public_key if settings.voice.backend == "vapi" else "",
        "assistant": build_assistant(settings, live, server_url),
    }
