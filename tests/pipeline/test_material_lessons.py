"""The teacher's materials in real spoken lessons: the learner asks about something in an uploaded file, the model is
given the best passages just before the learner's words, the tutor's reply cites them, and its line carries them as
sources, live on the page and in the stored transcript."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soxr
from faster_whisper import WhisperModel

from harness.rtc_client import LessonClient
from harness.speech import whisper_model_dir
from server import materials
from server.materials import Materials
from server.state import get_state
from tests.pipeline.conftest import LessonFactory, VoiceLesson, is_final, words
from tests.test_materials import NOTES, PHOTOSYNTHESIS, VOLCANOES, uploaded

pytestmark = pytest.mark.voice

PASSAGES_HEADER = "Passages from your teacher's materials"
NO_NOTES = "I have no notes about that, so let us think it through together."


def transcribe(pcm: np.ndarray, sample_rate: int) -> str:
    """What a listener hears in the tutor's audio (faster-whisper tiny.en, as the lessons use)."""
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, sample_rate, 16000)
    segments, _ = whisper().transcribe(audio, language="en", beam_size=1)
    return " ".join(segment.text for segment in segments)


@functools.cache
def whisper() -> WhisperModel:
    return WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")


def passage_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("role") == "system" and PASSAGES_HEADER in str(m.get("content"))]


class NotesTutor:
    """The scripted model: answers with the first sentence of the passage it was given as [1], citing it."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.requests.append(messages)
        given = passage_messages(messages)
        if not given:
            return NO_NOTES
        first = next(line for line in str(given[-1]["content"]).splitlines() if line.startswith("[1] "))
        text = first.split(") ", 1)[1]
        return f"Your teacher's notes say [1]: {text.split('. ')[0]}."


async def ask(
    peer: LessonClient, speech: Callable[[str], np.ndarray], question: str, heard: str, answer: str
) -> tuple[dict[str, Any], float]:
    """Say `question`; the tutor's final line containing `answer`, and the seconds from the learner's final words
    to the first audio of the reply."""
    said_at = time.monotonic()
    peer.send_pcm(speech(question), 16000)
    learner = await peer.wait_for_message(is_final("user", heard), timeout=30, since=said_at)
    reply = await peer.wait_for_message(is_final("assistant", answer), timeout=30, since=said_at)
    heard_at = peer.message_time(lambda m: m is learner) or said_at
    first_audio = peer.first_audio_after(heard_at)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)
    return reply, (first_audio - heard_at) if first_audio is not None else float("nan")


async def test_a_spoken_question_is_answered_from_the_teachers_notes_and_the_tutors_line_cites_them(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    tutor = NotesTutor()
    lesson: VoiceLesson = await start_lesson(tutor)
    companion_id = (await lesson.lesson())["companion"]["id"]
    peer = await lesson.connect(keep_audio=True)
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8, timeout=30)

    # No materials yet: the model reads no passages and the reply cites none.
    plain, _ = await ask(peer, speech, "How do plants make their food?", "plants", "no notes")
    assert "sources" not in plain
    assert passage_messages(tutor.requests[-1]) == []

    # The author (this learner built the companion) uploads notes during the lesson; the next turn draws on them.
    await uploaded(lesson.client, companion_id, "notes.txt", NOTES.encode())
    asked_at = time.monotonic()
    cited, first_reply = await ask(peer, speech, "How do plants make their food?", "plants", "photosynthesis")
    assert words(cited["transcript"]) == words(
        "Your teacher's notes say 1: Plants make their own food by photosynthesis."
    )
    # The line keeps its citation; the learner does not hear it read out as "one".
    heard = words(transcribe(peer.received_pcm(since=asked_at), 48000))
    assert {"plants", "food"} <= set(heard), heard
    assert "one" not in heard and "1" not in heard, heard
    assert [(s["material"], s["position"]) for s in cited["sources"]] == [("notes.txt", 1)]
    assert PHOTOSYNTHESIS.startswith(cited["sources"][0]["excerpt"].removesuffix("…"))
    request = tutor.requests[-1]
    # The passages sit just before the learner's words, after the conversation so far.
    assert request[-1]["role"] == "user" and "plants" in words(str(request[-1]["content"]))
    assert request[-2]["role"] == "system" and f"[1] (notes.txt) {PHOTOSYNTHESIS}" in str(request[-2]["content"])

    volcano, second_reply = await ask(peer, speech, "What happens when a volcano erupts?", "volcano", "magma")
    assert [(s["material"], s["position"]) for s in volcano["sources"]] == [("notes.txt", 2)]
    # This turn's passages replaced the last turn's: the context carries one turn's at most.
    given = passage_messages(tutor.requests[-1])
    assert len(given) == 1 and VOLCANOES in str(given[0]["content"]) and PHOTOSYNTHESIS not in str(given[0]["content"])

    await lesson.hang_up()
    stored = (await lesson.lesson())["transcript"]
    tutor_lines = [(t["text"], t["sources"]) for t in stored if t["role"] == "assistant"]
    assert [bool(sources) for _, sources in tutor_lines] == [False, False, True, True]
    assert tutor_lines[2][1] == cited["sources"] and tutor_lines[3][1] == volcano["sources"]
    assert all(t["sources"] is None for t in stored if t["role"] == "user")

    searched: Materials = get_state(lesson.app).extras[materials.EXTRAS_KEY]
    times = [t * 1000 for t in searched.search_times]
    print(
        f"\nmaterials in a lesson: {len(times)} searches, p50 {statistics.median(times):.1f} ms,"
        f" max {max(times):.1f} ms;"
        f" learner's last word to the cited reply's first audio: {first_reply:.2f} s, {second_reply:.2f} s"
    )
    assert len(times) == 3 and max(times) < searched.settings.search_budget_ms
