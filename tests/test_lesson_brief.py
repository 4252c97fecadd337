"""A lesson's brief: the companion's words, voice and length, and the time a lesson has left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.lesson_brief import brief_lesson
from server.lessons import CompanionView, LiveLesson
from server.settings import Settings, VoiceSettings

NEURA = CompanionView(7, "Neura", "science", "Neural networks", "female", "casual", 15)


def voice_settings(**voice: object) -> Settings:
    return Settings(voice=VoiceSettings.model_validate(voice))


def test_the_companion_shapes_the_lesson() -> None:
    brief = brief_lesson(voice_settings(), LiveLesson(3, 1, datetime.now(UTC), NEURA))
    assert brief.greeting == "Hello, let's start the session. Today we'll be talking about Neural networks."
    assert "Topic: Neural networks. Subject: science." in brief.system_prompt
    assert "casual" in brief.system_prompt
    assert (brief.voice, brief.style) == ("female", "casual")
    assert brief.max_secs == 15 * 60
    assert brief.goodbye == VoiceSettings().goodbye_message


def test_the_cap_bounds_every_lesson() -> None:
    brief = brief_lesson(voice_settings(max_lesson_secs=30), LiveLesson(3, 1, datetime.now(UTC), NEURA))
    assert brief.max_secs == 30
    assert 29 < brief.seconds_left() <= 30


def test_a_lesson_has_only_the_time_left_since_it_started() -> None:
    started = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    brief = brief_lesson(voice_settings(), LiveLesson(3, 1, started, NEURA))
    assert brief.seconds_left(started + timedelta(minutes=10)) == 5 * 60
    assert brief.seconds_left(started + timedelta(minutes=20)) == 0
    capped = brief_lesson(voice_settings(max_lesson_secs=120), LiveLesson(3, 1, started, NEURA))
    assert capped.seconds_left(started + timedelta(seconds=90)) == 30


def test_the_goodbye_is_filled_in_like_the_greeting() -> None:
    settings = voice_settings(goodbye_message="That's all about {topic} for today. Goodbye from {name}!")
    brief = brief_lesson(settings, LiveLesson(3, 1, datetime.now(UTC), NEURA))
    assert brief.goodbye == "That's all about Neural networks for today. Goodbye from Neura!"
