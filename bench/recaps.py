"""Recaps written by the embedded model in the background: how long one takes, how many pass the recap's checks,
and what writing one costs a live lesson's reply on the same copy of the model.

    .venv/bin/python -m bench.recaps [--runs 5] [--model FILE.gguf]

The recap is the one a lesson's end asks for (server/recaps.py), of a fixed seven-turn transcript, written by
`LanguageModel.write` as the server writes it: held to the recap's JSON schema by llama.cpp's grammar, each token
after any lesson's model calls. "ready" counts the answers `parse_recap` accepts (the rest are stored as failed).
The lesson part runs one copy of the model (voice.llm.instances = 1, the worst case): a lesson's reply asked
while a recap is being written takes the copy from it at the recap's next token, and the recap starts over.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from openai.types.chat import ChatCompletionMessageParam

from server.pipeline.compute import CpuGate
from server.pipeline.language_model import LanguageModel
from server.recaps import parse_recap, recap_request, recap_schema
from server.settings import Settings, load_settings

TOPIC = "Neural networks"
LINES = [
    ("assistant", "Hello, let's start the session. Today we'll be talking about Neural networks."),
    ("user", "What does a neuron do with its inputs?"),
    ("assistant", "It multiplies each input by a weight and adds them up, then adds a bias."),
    ("user", "So the bias is just another weight, like in football scores?"),
    ("assistant", "Not quite: the bias is added on its own, whatever the inputs are."),
    ("user", "Then the activation decides if the neuron fires?"),
    ("assistant", "Yes, the activation function turns the sum into the neuron's output."),
]
LESSON_TURN: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a tutor in a spoken lesson about neural networks. Answer in one sentence."},
    {"role": "user", "content": "What does the bias do?"},
]


def settings_for(model: str | None, instances: int) -> Settings:
    env = {
        "TUTOR_SERVER__DATA_DIR": tempfile.mkdtemp(prefix="bench-recaps-"),
        "TUTOR_VOICE__LLM__PROVIDER": "embedded",
        "TUTOR_VOICE__LLM__INSTANCES": str(instances),
    }
    if model:
        path = Path(model).resolve()
        env["TUTOR_VOICE__LLM__MODEL"] = path.name
        env["TUTOR_VOICE__MODELS_DIR"] = str(path.parent)
    return load_settings(None, env)


async def recaps_alone(model: str | None, runs: int) -> tuple[str, list[float], int]:
    settings = settings_for(model, 1)
    gate = CpuGate(1)
    language_model = LanguageModel(settings.voice, cpus=1, gate=lambda: gate)
    status = await language_model.start()
    if not status.available:
        raise SystemExit(status.detail)
    caps = settings.recaps
    times, ready = [], 0
    try:
        for _ in range(runs):
            messages = recap_request(caps, TOPIC, LINES, [], prompt_chars=language_model.prompt_chars(caps.max_tokens))
            started = time.perf_counter()
            answer = await language_model.write(
                "a recap",
                messages,
                max_tokens=caps.max_tokens,
                timeout_secs=caps.timeout_secs,
                schema=recap_schema(caps),
            )
            times.append(time.perf_counter() - started)
            ready += answer is not None and parse_recap(caps, answer, LINES, TOPIC) is not None
    finally:
        await language_model.close()
    return status.model, times, ready


async def first_token(language_model: LanguageModel) -> float:
    started = time.perf_counter()
    stream = await language_model.client.chat.completions.create(
        model=language_model.model_name,
        messages=LESSON_TURN,
        max_tokens=24,
        stream=True,
    )
    first: float | None = None
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first if first is not None else float("nan")


async def lesson_beside_a_recap(model: str | None, runs: int) -> tuple[list[float], list[float], int]:
    """A lesson's time to its first token alone, and asked while a recap is being written (one copy)."""
    settings = settings_for(model, 1)
    gate = CpuGate(1)
    language_model = LanguageModel(settings.voice, cpus=1, gate=lambda: gate)
    await language_model.start()
    runtime = language_model.runtime
    assert runtime is not None
    caps = settings.recaps
    alone, beside = [], []
    preempted = runtime.preempted  # the runtime is the process's: count from here
    try:
        for _ in range(runs):
            alone.append(await first_token(language_model))
            messages = recap_request(caps, TOPIC, LINES, [], prompt_chars=language_model.prompt_chars(caps.max_tokens))
            recap = asyncio.create_task(
                language_model.write(
                    "a recap", messages, max_tokens=caps.max_tokens, timeout_secs=60, schema=recap_schema(caps)
                )
            )
            calls = gate.calls
            for _ in range(500):  # until the recap is generating (bounded: 10 s)
                if gate.calls > calls + 5:
                    break
                await asyncio.sleep(0.02)
            beside.append(await first_token(language_model))
            await recap
    finally:
        await language_model.close()
    return alone, beside, runtime.preempted - preempted


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="recaps written, and lesson replies timed (default 5)")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the bundled model)")
    args = parser.parse_args(argv)
    runs = max(1, min(args.runs, 50))
    name, times, ready = asyncio.run(recaps_alone(args.model, runs))
    print(f"### {name}: recaps in the background, one copy, one thread")
    print("| runs | ready (passed the checks) | seconds a recap, p50 | max |")
    print("|---|---|---|---|")
    print(f"| {runs} | {ready}/{runs} | {statistics.median(times):.1f} | {max(times):.1f} |")
    alone, beside, preempted = asyncio.run(lesson_beside_a_recap(args.model, runs))
    print()
    print("| a lesson's first token | alone | while a recap is written | recaps started over |")
    print("|---|---|---|---|")
    print(f"| {runs} replies | {ms(alone)} | {ms(beside)} | {preempted} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
