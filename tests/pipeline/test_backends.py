"""A full lesson through every STT x TTS backend pair, hosted stages served on loopback by the real models."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.openai_audio import OpenAIAudioServer
from harness.scripted_llm import unused_base_url
from server.lesson_recorder import stored_lessons
from server.pipeline.models import SharedModels
from server.pipeline.service import VoiceService
from server.state import get_state
from tests.conftest import make_settings
from tests.pipeline.conftest import FIRST_MESSAGE, LessonFactory, VoiceLesson, is_final, is_status, words

pytestmark = pytest.mark.voice

QUESTION = "What does a single neuron do?"
REPLY = "A neuron adds up its inputs and fires when the sum is large enough."
STT_KEY = "sk-test-stt"
TTS_KEY = "sk-test-tts"
# The voices table names the hosted provider's voices; the companion speaks with one of them, casually.
HOSTED_VOICES = {
    "male.formal": {"voice": "onyx", "length_scale": 1.0},
    "male.casual": {"voice": "echo", "length_scale": 1.0},
    "female.formal": {"voice": "nova", "length_scale": 1.0},
    "female.casual": {"voice": "shimmer", "length_scale": 0.8},
}
COMPANION_VOICE = "shimmer"
COMPANION_SPEED = 1.25  # 1 / length_scale


@pytest.fixture(scope="module")
def audio_server() -> Iterator[OpenAIAudioServer]:
    """One OpenAI-compatible audio server for the module (its models load on the first request)."""
    # Each hosted stage has its own key in config; the server accepts either, and the log shows which came.
    server = OpenAIAudioServer()
    server.start()
    yield server
    server.stop()


def hosted_env(stt: str, tts: str, stt_url: str, tts_url: str) -> dict[str, str]:
    """Environment overrides selecting the providers, as an operator would set them."""
    env: dict[str, str] = {}
    if stt == "openai":
        env |= {
            "VOICE__STT__PROVIDER": "openai",
            "VOICE__STT__BASE_URL": stt_url,
            "VOICE__STT__MODEL": "whisper-1",
            "VOICE__STT__API_KEY": STT_KEY,
            "VOICE__STT__MAX_RETRIES": "0",
        }
    if tts == "openai":
        env |= {
            "VOICE__TTS__PROVIDER": "openai",
            "VOICE__TTS__BASE_URL": tts_url,
            "VOICE__TTS__MODEL": "tts-1",
            "VOICE__TTS__API_KEY": TTS_KEY,
            "VOICE__TTS__MAX_RETRIES": "0",
            "VOICE__TTS__VOICES": json.dumps(HOSTED_VOICES),
        }
    return env


def without_replaced_models(models: SharedModels, stt: str, tts: str) -> SharedModels:
    """The shared models minus those a hosted stage replaces, as the server loads them for that config:
    a lesson that touched the local model for a hosted stage would fail instead of passing unnoticed."""
    return dataclasses.replace(
        models,
        whisper=None if stt == "openai" else models.whisper,
        voices={} if tts == "openai" else models.voices,
        catalogue=None if tts == "openai" else models.catalogue,
    )


async def use_models(lesson: VoiceLesson, models: SharedModels) -> None:
    """Swap the lesson app's voice service for one on `models` (before anyone connects)."""
    state = get_state(lesson.app)
    assert state.voice is not None
    await state.voice.close()
    state.voice = VoiceService(state.settings, stored_lessons(state.db), models=models)
    lesson.stack.push_async_callback(state.voice.close)


def is_error(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "error"


@pytest.mark.parametrize(
    ("stt", "tts"),
    [("whisper", "piper"), ("whisper", "openai"), ("openai", "piper"), ("openai", "openai")],
)
async def test_a_full_lesson_through_each_backend_pair(
    start_lesson: LessonFactory,
    voice_models: SharedModels,
    speech: Callable[[str], np.ndarray],
    audio_server: OpenAIAudioServer,
    stt: str,
    tts: str,
) -> None:
    # Made before the lesson starts: piper's espeak state must not be shared with a synthesis in flight.
    question = speech(QUESTION)
    already = len(audio_server.requests)
    companion = {"voice": COMPANION_VOICE} if tts == "openai" else {}
    env = hosted_env(stt, tts, audio_server.base_url, audio_server.base_url)
    lesson = await start_lesson([REPLY], companion=companion, **env)
    await use_models(lesson, without_replaced_models(voice_models, stt, tts))
    peer = await lesson.connect()

    await peer.wait_for_message(is_status("in-progress"), timeout=10)
    greeting = await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    assert words(greeting["transcript"]) == words(FIRST_MESSAGE)
    await peer.wait_for_audio(after=0, timeout=10)
    await peer.wait_for_quiet(quiet=0.8)

    said_at = time.monotonic()
    peer.send_pcm(question, 16000)
    heard = await peer.wait_for_message(is_final("user", "single neuron"), timeout=30, since=said_at)
    assert "neuron" in words(heard["transcript"])
    # Each transcribed segment is shown while the turn is still being decided, whichever STT heard it.
    assert any(
        isinstance(m, dict)
        and m.get("type") == "transcript"
        and m.get("role") == "user"
        and m.get("transcriptType") == "partial"
        and "neuron" in words(m["transcript"])
        for m in peer.messages
    )
    answer = await peer.wait_for_message(is_final("assistant", "fires"), timeout=30, since=said_at)
    assert words(answer["transcript"]) == words(REPLY)
    assert peer.audio_seconds_after(said_at) > 1.0, "the tutor's answer was not heard"
    assert not any(is_error(m) for m in peer.messages), [m for m in peer.messages if is_error(m)]

    ours = audio_server.requests[already:]
    transcriptions = [r for r in ours if r["endpoint"] == "transcriptions"]
    spoken = [r for r in ours if r["endpoint"] == "speech"]
    if stt == "openai":
        assert transcriptions, "the hosted STT was never called"
        assert all(r["authorization"] == f"Bearer {STT_KEY}" for r in transcriptions)
        assert {(r["model"], r["language"]) for r in transcriptions} == {("whisper-1", "en")}
        assert any("neuron" in words(r["text"]) for r in transcriptions)
    else:
        assert transcriptions == []
    if tts == "openai":
        assert all(r["authorization"] == f"Bearer {TTS_KEY}" for r in spoken)
        assert {(r["model"], r["voice"], r["response_format"]) for r in spoken} == {("tts-1", COMPANION_VOICE, "pcm")}
        assert {r["speed"] for r in spoken} == {COMPANION_SPEED}
        said = " ".join(str(r["input"]) for r in spoken)
        assert words(said) == words(FIRST_MESSAGE) + words(REPLY)
    else:
        assert spoken == []

    ended = await lesson.hang_up()
    assert ended["end_reason"] == "customer-ended-call"
    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored] == ["assistant", "user", "assistant"]
    assert words(stored[0]["text"]) == words(FIRST_MESSAGE)
    assert "neuron" in words(stored[1]["text"])
    assert words(stored[2]["text"]) == words(REPLY)


async def test_hosted_stt_that_is_down_gives_an_error_event_and_the_lesson_goes_on(
    start_lesson: LessonFactory, voice_models: SharedModels, speech: Callable[[str], np.ndarray]
) -> None:
    question = speech(QUESTION)
    down = unused_base_url()
    lesson = await start_lesson([REPLY], **hosted_env("openai", "piper", down, ""))
    await use_models(lesson, without_replaced_models(voice_models, "openai", "piper"))
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8)

    said_at = time.monotonic()
    peer.send_pcm(question, 16000)
    error = await peer.wait_for_message(is_error, timeout=30, since=said_at)
    assert error["error"]["code"] == "stt-unavailable"
    assert down in error["error"]["message"]
    assert "TUTOR_VOICE__STT__BASE_URL" in error["error"]["message"]

    # The lesson is still live and the server still answers: the learner can hang up normally.
    assert not any(isinstance(m, dict) and m.get("status") == "ended" for m in peer.messages)
    assert (await lesson.lesson())["ended_at"] is None
    ended = await lesson.hang_up()
    assert ended["end_reason"] == "customer-ended-call"


async def test_hosted_tts_that_hangs_times_out_into_an_error_event(
    start_lesson: LessonFactory, voice_models: SharedModels
) -> None:
    with OpenAIAudioServer(stall=True) as hung:
        env = hosted_env("whisper", "openai", "", hung.base_url) | {"VOICE__TTS__TIMEOUT_SECS": "1"}
        lesson = await start_lesson([REPLY], companion={"voice": COMPANION_VOICE}, **env)
        await use_models(lesson, without_replaced_models(voice_models, "whisper", "openai"))
        peer = await lesson.connect()
        await peer.wait_for_message(is_status("in-progress"), timeout=10)

        # The greeting cannot be spoken: the page is told why instead of waiting in silence.
        error = await peer.wait_for_message(is_error, timeout=30)
        assert error["error"]["code"] == "tts-unavailable"
        assert hung.base_url in error["error"]["message"]
        assert "did not answer in time" in error["error"]["message"]
        assert hung.requests_to("speech"), "the hosted TTS was never called"

        assert (await lesson.lesson())["ended_at"] is None
        ended = await lesson.hang_up()
        assert ended["end_reason"] == "customer-ended-call"


async def test_doctor_calls_the_hosted_stages(tmp_path: Path, audio_server: OpenAIAudioServer) -> None:
    from server.pipeline.doctor import check_voice

    hosted = make_settings(
        tmp_path / "up", **hosted_env("openai", "openai", audio_server.base_url, audio_server.base_url)
    )
    already = len(audio_server.requests)
    checks = {name: (ok, detail) for name, ok, detail in await check_voice(hosted)}
    stt_ok, stt_detail = checks[f"STT ({audio_server.base_url})"]
    tts_ok, tts_detail = checks[f"TTS ({audio_server.base_url})"]
    assert tts_ok, tts_detail
    # The hosted voice's own words went through the hosted transcription: a real round trip.
    assert stt_ok, stt_detail
    assert "tutor" in words(stt_detail)
    assert not any(name.startswith(("whisper", "piper")) for name in checks), "a replaced local model was loaded"
    endpoints = [r["endpoint"] for r in audio_server.requests[already:]]
    assert endpoints == ["speech", "transcriptions"]

    down = unused_base_url()
    broken = make_settings(tmp_path / "down", **hosted_env("openai", "openai", down, down))
    checks = {name: (ok, detail) for name, ok, detail in await check_voice(broken)}
    for stage in ("STT", "TTS"):
        ok, detail = checks[f"{stage} ({down})"]
        assert not ok
        assert f"TUTOR_VOICE__{stage}__BASE_URL" in detail
