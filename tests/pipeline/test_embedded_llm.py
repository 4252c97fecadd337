"""The embedded runtime on the bundled model: answers through the OpenAI client, shares the CPU gate, survives a
reply cut short, fits a long lesson into its context, says what to do when its file is missing, and writes
background work (recaps) in the shape asked for, giving way to lessons."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from server.pipeline.compute import CpuGate
from server.pipeline.embedded_llm import bundled_model_path
from server.pipeline.language_model import LanguageModel
from server.recaps import recap_request, recap_schema
from server.settings import Settings
from tests.conftest import make_settings

SYSTEM = "You are a tutor in a spoken lesson about the water cycle. Answer in one short sentence."
QUESTION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is evaporation?"}]


@pytest.fixture
async def model(tmp_path: Path) -> AsyncIterator[tuple[LanguageModel, CpuGate]]:
    gate = CpuGate(2)
    settings = make_settings(tmp_path, VOICE__LLM__PROVIDER="embedded", VOICE__LLM__INSTANCES="2")
    language_model = LanguageModel(settings.voice, cpus=2, gate=lambda: gate)
    status = await language_model.start()
    assert status.available, status.detail
    yield language_model, gate
    await language_model.close()


async def _reply(model: LanguageModel, messages: list[dict[str, str]], max_tokens: int = 24) -> tuple[str, int]:
    stream = await model.client.chat.completions.create(
        model=model.model_name, messages=messages, max_tokens=max_tokens, stream=True
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts), sum(1 for p in parts if p)


def test_the_bundled_model_ships_with_the_server() -> None:
    path = bundled_model_path()
    assert path is not None and path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


async def test_an_answer_streams_token_by_token_and_each_token_takes_a_turn_at_the_cpu_gate(
    model: tuple[LanguageModel, CpuGate],
) -> None:
    language_model, gate = model
    before = gate.calls
    text, tokens = await _reply(language_model, QUESTION)
    assert text.strip(), "no answer"
    assert tokens >= 3, "the answer did not stream"
    assert gate.calls - before >= tokens
    status = language_model.status
    assert status is not None and status.demo and status.provider == "embedded"


async def test_a_reply_cut_short_frees_the_model_for_the_next(model: tuple[LanguageModel, CpuGate]) -> None:
    language_model, _ = model
    for _ in range(3):  # more cut replies than copies of the model: none is left held
        stream = await language_model.client.chat.completions.create(
            model=language_model.model_name, messages=QUESTION, max_tokens=64, stream=True
        )
        async for _chunk in stream:
            break
        await stream.close()
    text, _ = await asyncio.wait_for(_reply(language_model, QUESTION), 30)
    assert text.strip()


async def test_lessons_are_answered_side_by_side(model: tuple[LanguageModel, CpuGate]) -> None:
    language_model, _ = model
    replies = await asyncio.wait_for(asyncio.gather(*(_reply(language_model, QUESTION) for _ in range(3))), 60)
    assert all(text.strip() for text, _ in replies)


async def test_a_long_lesson_still_fits_a_small_context(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, VOICE__LLM__PROVIDER="embedded", VOICE__LLM__CONTEXT_SIZE="512")
    language_model = LanguageModel(settings.voice, cpus=1)
    try:
        assert (await language_model.start()).available
        turn = "Tell me more about how clouds form from the water vapour that rises from the sea. " * 3
        history: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
        for i in range(30):  # about 1,500 tokens: three times the context
            history += [{"role": "user", "content": turn}, {"role": "assistant", "content": f"Answer {i}. " + turn}]
        history.append({"role": "user", "content": "And what is rain?"})
        text, _ = await _reply(language_model, history, max_tokens=16)
        assert text.strip()
        runtime = language_model.runtime
        assert runtime is not None
        kept = runtime.fit(history, 16)
        assert kept[0]["role"] == "system" and kept[-1]["content"] == "And what is rain?"
        assert len(kept) < len(history)
    finally:
        await language_model.close()


async def test_a_missing_gguf_says_where_to_put_it(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        VOICE__LLM__PROVIDER="embedded",
        VOICE__LLM__MODEL="Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        VOICE__MODELS_DIR=str(tmp_path / "models"),
    )
    language_model = LanguageModel(settings.voice, cpus=1)
    try:
        status = await language_model.start()
        assert not status.available
        assert str(tmp_path / "models" / "Qwen2.5-7B-Instruct-Q4_K_M.gguf") in status.detail
    finally:
        await language_model.close()


async def test_a_spoken_reply_stops_after_a_few_sentences(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, VOICE__LLM__PROVIDER="embedded", VOICE__LLM__MAX_SENTENCES="1")
    language_model = LanguageModel(settings.voice, cpus=1)
    try:
        assert (await language_model.start()).available
        ask = [{"role": "user", "content": "Tell me everything you know about the water cycle, in detail."}]
        text, tokens = await _reply(language_model, ask, max_tokens=200)
        assert text.strip()
        assert tokens < 150, "the reply ran on to max_tokens"
        ended = [c for c in text.strip()[:-1] if c in ".!?"]
        assert len(ended) <= 1, text  # at most the one sentence asked for (an abbreviation may add a mark)
    finally:
        await language_model.close()


async def test_a_lessons_prompt_is_read_ahead_while_the_greeting_plays(model: tuple[LanguageModel, CpuGate]) -> None:
    language_model, gate = model
    before = gate.calls
    language_model.warm(SYSTEM, "Hello! Today we will talk about the water cycle.")
    for _ in range(100):
        await asyncio.sleep(0.05)
        if gate.calls > before:
            break
    assert gate.calls > before, "the prompt was never read ahead"
    text, _ = await _reply(
        language_model,
        [
            {"role": "system", "content": SYSTEM},
            {"role": "assistant", "content": "Hello! Today we will talk about the water cycle."},
            {"role": "user", "content": "What is evaporation?"},
        ],
    )
    assert text.strip()


STORY = [{"role": "user", "content": "Count slowly from one to one hundred, in words, one number per line."}]


async def test_background_work_gives_its_copy_to_a_lesson_and_then_starts_over(tmp_path: Path) -> None:
    """A recap written while a lesson needs the only copy of the model: the lesson is answered first (the recap
    hands the copy over at its next token), and the recap is still written whole afterwards."""
    settings = make_settings(
        tmp_path, VOICE__LLM__PROVIDER="embedded", VOICE__LLM__INSTANCES="1", VOICE__LLM__MAX_SENTENCES="1"
    )
    gate = CpuGate(1)
    language_model = LanguageModel(settings.voice, cpus=1, gate=lambda: gate)
    held = threading.Event()
    release = threading.Event()

    def hold_the_core() -> None:  # another lesson's speech model, holding the only core
        with gate.slot():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_core)
    try:
        assert (await language_model.start()).available
        runtime = language_model.runtime
        assert runtime is not None and runtime.instances == 1
        preempted = runtime.preempted  # the process shares the runtime: count from here
        holder.start()
        assert await asyncio.to_thread(held.wait, 10)
        # The grammar holds it to at least 12 items: a reply far longer than one sentence, whatever the model says.
        schema = {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 12, "maxItems": 12}
        recap = asyncio.create_task(
            language_model.write("a recap", STORY, max_tokens=300, timeout_secs=60, schema=schema)
        )
        await until(lambda: gate.waiting == 1)  # the recap holds the copy and waits for the core
        lesson = asyncio.create_task(_reply(language_model, QUESTION))
        await until(lambda: runtime.lessons_waiting == 1)  # the lesson waits for the copy
        release.set()
        text, _ = await asyncio.wait_for(lesson, 60)
        assert text.strip()
        assert not recap.done(), "the recap kept the copy while the lesson waited"
        written = await asyncio.wait_for(recap, 120)
        # Written whole, with no sentence cap.
        assert written is not None and len(json.loads(written, strict=False)) == 12, written
        assert runtime.preempted - preempted == 1
    finally:
        release.set()
        if holder.is_alive():
            holder.join(5)
        await language_model.close()


async def test_background_work_held_to_a_schema_answers_in_that_shape(model: tuple[LanguageModel, CpuGate]) -> None:
    language_model, gate = model
    settings = Settings().recaps
    lines = [
        ("assistant", "Today we talk about the water cycle."),
        ("user", "What happens to water when the sun heats the sea?"),
        ("assistant", "It evaporates and rises as vapour."),
        ("user", "And then it turns into clouds when it cools down?"),
    ]
    before = gate.calls
    messages = recap_request(settings, "the water cycle", lines, [], prompt_chars=language_model.prompt_chars(600))
    answer = await language_model.write(
        "a recap", messages, max_tokens=settings.max_tokens, timeout_secs=60, schema=recap_schema(settings)
    )
    assert answer is not None
    # llama.cpp's grammar: JSON of the recap's shape, whatever the model knows (a raw line break may be in a string).
    data = json.loads(answer, strict=False)
    assert set(data) == {"covered", "hard", "questions", "facts"}
    assert isinstance(data["covered"], str) and 2 <= len(data["questions"]) <= 3
    assert all(isinstance(q, str) for q in data["questions"])
    assert gate.calls - before >= 10  # every token took its turn at the CPU gate


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")
