"""The shared speech models on their own: what Whisper hears, how piper voices are picked, the doctor."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from server.lessons import CompanionView, LiveLesson
from server.pipeline.doctor import check_llm
from server.pipeline.lesson import plan_lesson
from server.pipeline.models import BUNDLED_VOICE, SharedModels, bundled_voice_path, load_models
from server.pipeline.settings import VoiceSettings
from server.pipeline.stt import WhisperOptions, transcribe_pcm
from server.pipeline.tts import split_clauses, synthesize_sentence
from tests.conftest import make_settings
from tests.pipeline.conftest import words
from tests.support.scripted_llm import ScriptedLLM, unused_base_url

pytestmark = pytest.mark.voice


@pytest.mark.parametrize(
    "sentence",
    [
        "Can you explain how photosynthesis works in plants?",
        "Yes, I think so.",
        "What is the difference between mitosis and meiosis, and why does it matter?",
    ],
)
def test_whisper_hears_what_was_said(
    voice_models: SharedModels, speech: Callable[[str], np.ndarray], sentence: str
) -> None:
    heard = transcribe_pcm(voice_models.whisper, speech(sentence).tobytes(), WhisperOptions())
    assert words(heard) == words(sentence)


def test_whisper_hears_nothing_in_silence(voice_models: SharedModels) -> None:
    assert transcribe_pcm(voice_models.whisper, np.zeros(16000, np.int16).tobytes(), WhisperOptions()) == ""


def test_tutor_speech_is_understood_by_whisper(voice_models: SharedModels) -> None:
    voice, _ = voice_models.voice_for("male", "formal")
    phonemes = voice.voice.phonemize("The mitochondria is the powerhouse of the cell.")
    pcm = synthesize_sentence(voice, phonemes[0], 1.0, 16000)
    assert np.abs(np.frombuffer(pcm, np.int16)).max() > 10000
    heard = transcribe_pcm(voice_models.whisper, pcm, WhisperOptions())
    assert "powerhouse" in words(heard)


def test_long_sentences_are_spoken_clause_by_clause() -> None:
    assert split_clauses("Well, think of it this way: a neuron is a tiny switch, and many make a brain.") == [
        "Well, think of it this way:",
        "a neuron is a tiny switch,",
        "and many make a brain.",
    ]
    assert split_clauses("Yes, exactly.") == ["Yes, exactly."]
    assert split_clauses("Our time is up for today. Well done, and goodbye!") == [
        "Our time is up for today. Well done, and goodbye!"
    ]


def test_voice_slots_use_school_voices_and_fall_back_to_the_bundled_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    bundled = bundled_voice_path()
    os.symlink(bundled, models_dir / "en_US-school-medium.onnx")
    os.symlink(f"{bundled}.json", models_dir / "en_US-school-medium.onnx.json")
    settings = VoiceSettings.model_validate(
        {
            "models_dir": str(models_dir),
            "tts": {
                "voices": {
                    "female.casual": {"voice": "en_US-school-medium", "length_scale": 0.9},
                    "female.formal": {"voice": "en_US-missing-high", "length_scale": 1.1},
                }
            },
        }
    )
    with caplog.at_level(logging.WARNING):
        models = load_models(settings, cpu_count=1)
    try:
        voice, rate = models.voice_for("female", "casual")
        assert (voice.name, rate) == ("en_US-school-medium", 0.9)
        voice, rate = models.voice_for("female", "formal")
        assert (voice.name, rate) == (BUNDLED_VOICE, 1.1)
        assert "en_US-missing-high" in caplog.text
    finally:
        models.close()


def test_the_companion_shapes_the_lesson() -> None:
    companion = CompanionView(7, "Neura", "science", "Neural networks", "female", "casual", 15)
    lesson = LiveLesson(3, 1, datetime.now(UTC), companion)
    plan = plan_lesson(lesson, VoiceSettings())
    assert plan.first_message == "Hello, let's start the session. Today we'll be talking about Neural networks."
    assert "Topic: Neural networks. Subject: science." in plan.system_prompt
    assert "casual" in plan.system_prompt
    assert plan.max_duration_secs == 15 * 60
    assert (plan.voice, plan.style) == ("female", "casual")
    capped = plan_lesson(lesson, VoiceSettings(max_lesson_secs=30))
    assert capped.max_duration_secs == 30


async def test_doctor_says_how_to_point_the_server_at_an_llm(tmp_path: Path) -> None:
    down = unused_base_url()
    name, ok, detail = await check_llm(make_settings(tmp_path, VOICE__LLM__BASE_URL=down))
    assert (name, ok) == ("LLM", False)
    assert down in detail and "TUTOR_VOICE__LLM__BASE_URL" in detail and "voice.llm.model" in detail

    with ScriptedLLM(["Hello!"]) as llm:
        name, ok, detail = await check_llm(make_settings(tmp_path, VOICE__LLM__BASE_URL=llm.base_url))
    assert ok, detail
    assert "Hello" in detail


def test_a_looping_decoder_is_cut_back_to_one_copy() -> None:
    from server.pipeline.stt import _drop_repeats

    assert _drop_repeats([1, 2, 3, 1, 2, 3, 1, 2]) == [1, 2, 3]
    assert _drop_repeats([7, 7, 7, 7, 7, 7]) == [7, 7, 7]
    assert _drop_repeats([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]
