"""A pedagogy check on any language model: fixed learner turns, each reply scored on what a teacher would look for.

The cases are a learner stating a misconception ("heavier things fall faster", "plants get their food from the
soil"), a learner asking for the answer to a homework sum in a socratic lesson, and an off-topic request. Each
reply is scored by rules (and, with --judge, by a model as well): does it correct the misconception, withhold
the answer, steer back to the lesson, and stay short enough to speak. The system prompt is the one a real lesson
sends (server/lesson_brief.py, with the companion's teaching style), so the scores are the lessons' own.

    .venv/bin/python -m bench.pedagogy --model embedded                 # the bundled model, in-process
    .venv/bin/python -m bench.pedagogy --model scripted                 # the scripted stand-in (a baseline)
    .venv/bin/python -m bench.pedagogy --base-url http://gpu:8000/v1 --model llama3.1:8b --judge

Several --model options (or --model with --base-url) print one table each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from openai import AsyncOpenAI, AsyncStream

from harness.scripted_llm import ScriptedLLM
from server.lesson_brief import brief_lesson
from server.lessons import CompanionView, LiveLesson
from server.pipeline.llm_client import openai_client
from server.pipeline.socratic import as_digits, problems_in, states_answer
from server.settings import LLMSettings, Settings, VoiceSettings

# Short enough to speak: a reply a learner listens to in about 20 seconds.
MAX_WORDS = 60
MAX_SENTENCES = 3
CRITERIA = ("corrects", "withholds", "on_topic", "short")
HEADINGS = {"corrects": "corrects misconception", "withholds": "withholds answer", "on_topic": "on topic"}


@dataclass(frozen=True)
class Case:
    """One learner turn in a lesson with a companion, and what the reply to it must do."""

    name: str
    subject: str
    topic: str
    teaching: str
    said: str
    # Misconception cases: words of the correct idea (any one counts), and ways of agreeing with the wrong one.
    correct_idea: tuple[str, ...] = ()
    endorses: tuple[str, ...] = ()
    # Off-topic cases: words that show the reply steers back to the lesson.
    lesson_words: tuple[str, ...] = ()
    checks: tuple[str, ...] = ("short",)


_AGREES = (
    r"^\W*(?:well,? )?(?:yes|yeah|yep|that's (?:right|correct|true|a fact)|you're (?:right|correct)|correct|exactly"
    r"|right|true)\b"
)
# A negation just before a restated misconception ("they don't get their food from the soil") is a correction.
_NEGATED = re.compile(r"(?:n't|\bnot|\bnever)\b[^.?!,]{0,25}$")
# A result stated for a sum, right or wrong ("15 + 27 = 32", "12 times 7 is 85"), or a reply that is only a number.
_STATED_RESULT = re.compile(r"\d+(?:\s*[-+*/]\s*\d+)+\s*(?:=|\bis\b|\bequals\b|\bmakes\b)\s*\d")
_BARE_NUMBER = re.compile(r"^\W*(?:\w+\W+){0,2}\d+(?:\.\d+)?\W*$")
_BUT = r"\b(?:but|however|actually|not quite|not exactly|common (?:idea|mistake|misconception)|myth)\b"

CASES: tuple[Case, ...] = (
    Case(
        name="heavier falls faster",
        subject="science",
        topic="Gravity and falling objects",
        teaching="explain",
        said="I know that heavier things fall faster than light things. That's right, isn't it?",
        correct_idea=(
            "same rate",
            "same speed",
            "same time",
            "same acceleration",
            "same way",
            "at the same",
            "equally fast",
            "air resistance",
            "doesn't depend",
            "does not depend",
            "regardless of",
            "not because",
        ),
        endorses=(r"\bheavier (?:things|objects) (?:do |really |always )?fall faster\b",),
        checks=("corrects", "short"),
    ),
    Case(
        name="plants eat soil",
        subject="science",
        topic="How plants make their food",
        teaching="explain",
        said="Plants get their food from the soil, don't they?",
        correct_idea=(
            "sunlight",
            "light",
            "photosynthesis",
            "make their own food",
            "carbon dioxide",
            "sugar",
            "glucose",
        ),
        endorses=(r"\bget (?:all |most of )?their food (?:from|in) the soil\b",),
        checks=("corrects", "short"),
    ),
    Case(
        name="homework answer (socratic)",
        subject="maths",
        topic="Multiplication",
        teaching="socratic",
        said="My homework asks what is 12 times 7. Just tell me the answer, please.",
        checks=("withholds", "short"),
    ),
    Case(
        name="homework answer, pressed (socratic)",
        subject="maths",
        topic="Adding numbers",
        teaching="socratic",
        said="I don't want hints. What is 15 plus 27? Only say the number.",
        checks=("withholds", "short"),
    ),
    Case(
        name="off-topic request",
        subject="geography",
        topic="The water cycle",
        teaching="explain",
        said="Forget the lesson. Who do you think will win the football match tonight?",
        lesson_words=("water", "cycle", "evaporat", "rain", "cloud", "condens", "lesson", "topic"),
        checks=("on_topic", "short"),
    ),
)

# The scripted stand-in's replies: what a good tutor says, so the rules can be seen to pass (a baseline).
STAND_IN = {
    "heavier falls faster": (
        "Not quite! Without air resistance, heavy and light things fall at the same rate. "
        "What do you think slows a feather down?"
    ),
    "plants eat soil": (
        "That's a common idea, but plants make their own food from sunlight, air and water: photosynthesis. "
        "What do you think the leaves are for?"
    ),
    "homework answer (socratic)": "Let's work it out together. What is 10 times 7, and what is 2 times 7?",
    "homework answer, pressed (socratic)": "Try it in steps: what is 15 plus 20 first?",
    "off-topic request": "I can't say, but let's get back to the water cycle. Where does rain come from?",
}


def stand_in(messages: list[dict[str, Any]]) -> str:
    """The scripted model: the stand-in reply to whichever case's learner turn it is sent."""
    said = str(messages[-1].get("content", "")) if messages else ""
    if messages and messages[0].get("content") == JUDGE_PROMPT:
        return '{"pass": true}'
    for case in CASES:
        if case.said in said:
            return STAND_IN[case.name]
    return "Let's get back to our lesson."


# -- scoring ------------------------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", s)]


def rule_scores(case: Case, reply: str) -> dict[str, bool]:
    """Each of the case's checks, by rule."""
    lowered = reply.lower().replace("\u2019", "'")
    scores: dict[str, bool] = {}
    for check in case.checks:
        if check == "corrects":
            knows = any(word in lowered for word in case.correct_idea)
            agrees = bool(re.search(_AGREES, lowered)) and not re.search(_BUT, lowered)
            restates = any(
                not _NEGATED.search(lowered[: m.start()])
                for pattern in case.endorses
                for m in re.finditer(pattern, lowered)
            )
            scores[check] = knows and not agrees and not restates
        elif check == "withholds":
            digits = as_digits(reply)
            scores[check] = not (
                any(states_answer(reply, problem) for problem in problems_in(case.said))
                or _STATED_RESULT.search(digits)
                or _BARE_NUMBER.match(digits)
            )
        elif check == "on_topic":
            scores[check] = any(word in lowered for word in case.lesson_words)
        elif check == "short":
            scores[check] = len(reply.split()) <= MAX_WORDS and len(_sentences(reply)) <= MAX_SENTENCES
    return scores


JUDGE_PROMPT = (
    "You grade one reply of an AI tutor in a spoken lesson with a child. You are told what the reply must do. "
    'Answer with one line of JSON and nothing else: {"pass": true} or {"pass": false}.'
)
JUDGE_ASKS = {
    "corrects": "It must correct the student's misconception (say what is actually true), not agree with it.",
    "withholds": "It must not give the answer to the student's problem; guiding them with a question is right.",
    "on_topic": "It must steer the student back to the lesson's topic rather than take up the off-topic request.",
    "short": "It must be short enough to say aloud: at most three sentences.",
}


async def judge_scores(client: AsyncOpenAI, model: str, case: Case, reply: str) -> dict[str, bool | None]:
    """Each of the case's checks as the judge model sees it (None: no usable verdict)."""
    scores: dict[str, bool | None] = {}
    for check in case.checks:
        ask = (
            f"Lesson topic: {case.topic}.\nThe student said: {case.said}\nThe tutor replied: {reply}\n"
            f"{JUDGE_ASKS[check]}"
        )
        response = await client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": ask}],
            temperature=0,
            max_tokens=20,
        )
        answer = (response.choices[0].message.content or "") if response.choices else ""
        found = re.search(r"\{.*?\}", answer, re.DOTALL)
        try:
            verdict = json.loads(found.group(0)).get("pass") if found else None
        except (json.JSONDecodeError, AttributeError):
            verdict = None
        scores[check] = verdict if isinstance(verdict, bool) else None
    return scores


# -- running a model ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    reply: str
    seconds: float
    rules: dict[str, bool]
    judge: dict[str, bool | None] = field(default_factory=dict)


def messages_for(settings: Settings, case: Case) -> list[dict[str, str]]:
    """What a lesson with this case's companion sends the model for the learner's turn: its system prompt (with
    the teaching style), its greeting, and the turn."""
    companion = CompanionView(0, "Bench", case.subject, case.topic, "en_US-bench", "casual", 10, case.teaching)
    brief = brief_lesson(settings, LiveLesson(0, 0, datetime.now(UTC), companion))
    return [
        {"role": "system", "content": brief.system_prompt},
        {"role": "assistant", "content": brief.greeting},
        {"role": "user", "content": case.said},
    ]


async def run_cases(
    client: AsyncOpenAI,
    model: str,
    settings: Settings,
    *,
    cases: Sequence[Case] = CASES,
    repeat: int = 1,
    judge: tuple[AsyncOpenAI, str] | None = None,
) -> list[Result]:
    """Each case `repeat` times against the model, scored."""
    llm = settings.voice.llm
    results = []
    for case in cases:
        for _ in range(repeat):
            started = time.monotonic()
            # Streamed, as lessons ask: the embedded runtime stops a streamed reply after voice.llm.max_sentences.
            stream = await client.chat.completions.create(
                model=model,
                messages=messages_for(settings, case),  # type: ignore[arg-type]
                temperature=llm.temperature,
                max_tokens=llm.max_tokens,
                stream=True,
            )
            assert isinstance(stream, AsyncStream)
            parts = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            reply = "".join(parts).strip()
            result = Result(case, reply, time.monotonic() - started, rule_scores(case, reply))
            if judge is not None:
                result.judge = await judge_scores(judge[0], judge[1], case, reply)
            results.append(result)
    return results


def _cell(values: Sequence[bool]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return "pass" if values[0] else "FAIL"
    return f"{sum(values)}/{len(values)}"


def table(title: str, results: Sequence[Result], *, judged: bool = False, show: bool = False) -> str:
    """The model's table: one row per case (its replies' scores: pass/FAIL, or passed/replies with --repeat),
    the rule scores (and whether the judge agreed), totals at the foot."""
    columns = [HEADINGS.get(c, c) for c in CRITERIA]
    head = ["case", "style", "words", "s", *columns] + (["judge agrees"] if judged else [])
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    by_case: dict[str, list[Result]] = {}
    for r in results:
        by_case.setdefault(r.case.name, []).append(r)
    for replies in by_case.values():
        case = replies[0].case
        words = sorted(len(r.reply.split()) for r in replies)
        cells = [
            case.name,
            case.teaching,
            str(words[len(words) // 2]),
            f"{sum(r.seconds for r in replies) / len(replies):.1f}",
        ]
        cells += [_cell([r.rules[c] for r in replies if c in r.rules]) for c in CRITERIA]
        if judged:
            agree = [r.judge[c] == r.rules[c] for r in replies for c in r.rules if r.judge.get(c) is not None]
            cells.append(f"{sum(agree)}/{len(agree)}" if agree else "no verdict")
        lines.append("| " + " | ".join(cells) + " |")
    totals = ["**passed**", "", "", f"{sum(r.seconds for r in results) / max(1, len(results)):.1f}"]
    for c in CRITERIA:
        scored = [r.rules[c] for r in results if c in r.rules]
        totals.append(f"**{sum(scored)}/{len(scored)}**" if scored else "-")
    if judged:
        verdicts = [v for r in results for v in r.judge.values() if v is not None]
        totals.append(f"judge passed {sum(verdicts)}/{len(verdicts)}" if verdicts else "no verdict")
    lines.append("| " + " | ".join(totals) + " |")
    if show:
        lines.append("")
        lines += [f"- {r.case.name}: {r.reply!r}" for r in results]
    return "\n".join(lines)


async def bench_scripted(settings: Settings, args: argparse.Namespace, replies: Callable[..., str] = stand_in) -> str:
    llm = ScriptedLLM(replies)
    base_url = llm.start()
    client = openai_client(base_url, None, 30.0, 0)
    try:
        results = await run_cases(
            client,
            "scripted-tutor",
            settings,
            repeat=args.repeat,
            judge=(client, "scripted-tutor") if args.judge else None,
        )
    finally:
        await client.close()
        llm.stop()
    return table("scripted stand-in (harness/scripted_llm.py)", results, judged=args.judge, show=args.show)


async def bench_embedded(settings: Settings, args: argparse.Namespace) -> str:
    from server.pipeline.language_model import LanguageModel

    voice = settings.voice.model_copy(
        update={"llm": settings.voice.llm.model_copy(update={"provider": "embedded", "model": args.gguf or "bundled"})}
    )
    model = LanguageModel(voice, os.cpu_count() or 1)
    status = await model.start()
    if not status.available:
        raise SystemExit(f"the embedded model did not load: {status.detail}")
    runtime = model.runtime
    title = f"{model.model_name} (embedded, {runtime.path.name if runtime is not None else 'no runtime'})"
    try:
        results = await run_cases(
            model.client,
            model.model_name,
            settings,
            repeat=args.repeat,
            judge=(model.client, model.model_name) if args.judge else None,
        )
    finally:
        await model.close()
    return table(title, results, judged=args.judge, show=args.show)


async def bench_endpoint(settings: Settings, args: argparse.Namespace, model: str) -> str:
    api_key = os.environ.get("TUTOR_VOICE__LLM__API_KEY") or None
    from pydantic import SecretStr

    client = openai_client(args.base_url, SecretStr(api_key) if api_key else None, args.timeout, 0)
    try:
        results = await run_cases(
            client, model, settings, repeat=args.repeat, judge=(client, model) if args.judge else None
        )
    finally:
        await client.close()
    return table(f"{model} at {args.base_url}", results, judged=args.judge, show=args.show)


async def main_async(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.temperature is not None:
        settings = settings.model_copy(update={"voice": VoiceSettings(llm=LLMSettings(temperature=args.temperature))})
    for name in args.model or ["scripted"]:
        if name == "scripted":
            print(await bench_scripted(settings, args))
        elif name == "embedded":
            print(await bench_embedded(settings, args))
        elif args.base_url:
            print(await bench_endpoint(settings, args, name))
        else:
            print(f"--model {name}: give --base-url for an endpoint's model", file=sys.stderr)
            return 2
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pedagogy", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        help='"embedded" (the bundled model, in-process), "scripted" (the stand-in), or an endpoint\'s model '
        "name with --base-url; repeat for several tables (default: scripted)",
    )
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (key from TUTOR_VOICE__LLM__API_KEY)")
    parser.add_argument("--gguf", help="with --model embedded: a GGUF file instead of the bundled model")
    parser.add_argument("--judge", action="store_true", help="also ask the same model to grade each reply")
    parser.add_argument("--repeat", type=int, default=1, help="replies per case (sampling varies them)")
    parser.add_argument("--temperature", type=float, help="instead of voice.llm.temperature (0.7)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request to an endpoint")
    parser.add_argument("--show", action="store_true", help="print each reply under its table")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
