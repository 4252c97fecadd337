"""How lessons should share the embedded model: one copy with a queue, or a copy per core.

Two lessons ask the bundled model at once, three times over, with one copy and then with two; prints each
set-up's time to the first token and to the whole reply. Run: `.venv/bin/python -m bench.llm_copies`.
"""

from __future__ import annotations

import asyncio
import time

from server.pipeline.compute import CpuGate
from server.pipeline.language_model import LanguageModel
from server.settings import load_settings

MESSAGES = [
    {"role": "system", "content": "You are a tutor. Answer in two short sentences."},
    {"role": "user", "content": "What is a neuron?"},
]
ROUNDS = 3
AT_ONCE = 2


async def _ask(model: LanguageModel) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    stream = await model.client.chat.completions.create(
        model=model.model_name, messages=MESSAGES, max_tokens=40, stream=True
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


async def main() -> None:
    for copies in (1, 2):
        gate = CpuGate(2)
        env = {
            "TUTOR_VOICE__LLM__PROVIDER": "embedded",
            "TUTOR_VOICE__LLM__INSTANCES": str(copies),
            "TUTOR_VOICE__LLM__MAX_SENTENCES": "0",
        }
        model = LanguageModel(load_settings(None, env).voice, cpus=2, gate=lambda gate=gate: gate)
        await model.start()
        await _ask(model)  # load and cache the prompt
        results = [r for _ in range(ROUNDS) for r in await asyncio.gather(*(_ask(model) for _ in range(AT_ONCE)))]
        firsts = sorted(f for f, _ in results)
        totals = sorted(t for _, t in results)
        first_mid, whole_mid = firsts[len(firsts) // 2], totals[len(totals) // 2]
        print(f"copies={copies}: {AT_ONCE} lessons at once x {ROUNDS}:", end=" ")
        print(f"first token median {first_mid:.2f} s, max {firsts[-1]:.2f} s;", end=" ")
        print(f"whole reply median {whole_mid:.2f} s, max {totals[-1]:.2f} s")
        await model.close()


if __name__ == "__main__":
    asyncio.run(main())
