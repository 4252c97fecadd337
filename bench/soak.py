"""Soak benchmark: a school day of lessons in rounds, and what the server still holds after each round.

Run from the repository root::

    .venv/bin/python -m bench.soak                          # 25 rounds of 8 lessons (200 lessons)
    .venv/bin/python -m bench.soak --rounds 8 --k 4         # a quick look
    .venv/bin/python -m bench.soak --probe --trim           # also Python objects, malloc arenas, malloc_trim

Our server (`tutor serve`, as shipped) runs in its own process against a scripted OpenAI-compatible LLM in this
one, all on loopback. A class of K learners signs up, each with a few companions. Each round the K learners
hold a lesson at once: each connects over WebRTC, hears the greeting, speaks `--turns` times, hears each
answer and hangs up. Once the round's lessons have ended the server is left
to rest for a few seconds and then sampled from /proc: resident memory (RSS, and PSS / USS from
smaps_rollup), open file descriptors and OS threads; and from its /metrics endpoint: asyncio tasks and live
lessons. The summary is the growth of resting memory per lesson after the warm-up rounds (a least-squares fit
over rounds), and the first against the last figure of everything else.

`--probe` starts the server through a thin wrapper (`bench.soak serve-with-probe`) that, on SIGUSR1, writes
Python object counts by type, glibc's malloc figures and optionally tracemalloc's growth to a file: what
tells a kept reference (objects grow) from native allocations (malloc in use grows) from fragmentation (only
RSS and malloc's free bytes grow). `--trim` has the wrapper call malloc_trim(0) after each sample and reports
RSS after it as well.

It exits non-zero only on errors (the server did not start or died, a lesson could not be held), not on a
missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import key_value
from bench.voice import (
    COMPANION,
    QUIET_SECS,
    TUTOR_REPLIES,
    Clip,
    OursTarget,
    PostOffer,
    _expect,
    converse,
    make_clips,
    process_cpu_secs,
)
from harness.rtc_client import LessonClient
from harness.scripted_llm import ScriptedLLM

METRICS_TOKEN = "soak-metrics"
TARGET_MB_PER_LESSON = 0.5
"""The issue's bar: resting memory grows by less than this per lesson once warmed up."""
REST_TIMEOUT_SECS = 60.0
"""How long the round's lessons may take to end on the server before the sample is taken anyway."""
PROBE_TIMEOUT_SECS = 60.0
# Companions the lessons rotate over: a school has several, each with its own greeting.
TOPICS = ["the great rivers of the world", "volcanoes", "fractions", "the water cycle"]


# -- measuring the server --------------------------------------------------------------------------


def proc_figures(pid: int) -> dict[str, float | None]:
    """RSS, PSS and USS (MB), open fds and OS threads of a process, from /proc (None where unreadable)."""
    figures: dict[str, float | None] = {"rss_mb": None, "pss_mb": None, "uss_mb": None, "fds": None, "threads": None}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                figures["rss_mb"] = int(line.split()[1]) / 1024
    with contextlib.suppress(OSError):
        rollup: dict[str, int] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                rollup[name] = int(parts[0])
        if "Pss" in rollup:
            figures["pss_mb"] = rollup["Pss"] / 1024
        if "Private_Clean" in rollup and "Private_Dirty" in rollup:
            figures["uss_mb"] = (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024
    with contextlib.suppress(OSError):
        figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    with contextlib.suppress(OSError):
        figures["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    return figures


def parse_metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """The unlabelled samples called `names` in a Prometheus text exposition."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name in names:
            with contextlib.suppress(ValueError):
                found[name] = float(value)
    return found


@dataclass
class Learner:
    """One learner of the class: signed in on its own client, with its own companions."""

    http: httpx.AsyncClient
    companion_ids: list[int]


class SoakTarget(OursTarget):
    """Our server with a class of signed-in learners, its metrics token set, hang-ups by lesson id, the probe.

    A learner holds one live lesson at a time (another ends the first), so K lessons at once are K learners.
    """

    def __init__(
        self,
        llm_url: str,
        log_dir: Path,
        extra_env: dict[str, str],
        learners: int,
        companions: int,
        probe: bool = False,
        trim: bool = False,
        tracemalloc_frames: int = 0,
    ) -> None:
        super().__init__(llm_url, log_dir, breakdown=False, extra_env=extra_env)
        self._log_path = log_dir / "soak-server.log"
        self._learners_wanted = learners
        self._companions_wanted = companions
        self.learners: list[Learner] = []
        self.probe_path = log_dir / "probe.json" if probe else None
        self._trim = trim
        self._tracemalloc_frames = tracemalloc_frames
        self._probe_seq = 0

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["TUTOR_OBSERVABILITY__METRICS_TOKEN"] = METRICS_TOKEN
        # The free plan caps lessons; each learner of the class holds dozens.
        env["TUTOR_PLANS__DEFAULT_PLAN"] = "pro"
        if self.probe_path is not None:
            env["SOAK_PROBE_FILE"] = str(self.probe_path)
            env["SOAK_PROBE_TRIM"] = "1" if self._trim else ""
            env["SOAK_TRACEMALLOC"] = str(self._tracemalloc_frames)
        return env

    def _cli(self, *args: str) -> list[str]:
        if self.probe_path is not None and args[:1] == ("serve",):
            return [sys.executable, "-m", "bench.soak", "serve-with-probe", *args]
        return super()._cli(*args)

    async def start(self) -> None:
        await super().start()
        assert self._companion_id is not None
        first = Learner(self._http, [self._companion_id])
        await self._add_companions(first, TOPICS[1 : self._companions_wanted])
        self.learners = [first]
        for index in range(1, self._learners_wanted):
            http = httpx.AsyncClient(timeout=60)
            email, password = f"learner{index}@school.test", self.PASSWORD
            body = {"email": email, "password": password, "name": f"Learner {index}"}
            _expect(await http.post(f"{self.base_url}/api/auth/register", json=body), 201, "register")
            login = {"email": email, "password": password}
            _expect(await http.post(f"{self.base_url}/api/auth/login", json=login), 200, "login")
            learner = Learner(http, [])
            await self._add_companions(learner, TOPICS[: self._companions_wanted])
            self.learners.append(learner)

    async def _add_companions(self, learner: Learner, topics: list[str]) -> None:
        for topic in topics:
            response = await learner.http.post(f"{self.base_url}/api/companions", json={**COMPANION, "topic": topic})
            _expect(response, 201, "create companion")
            learner.companion_ids.append(int(response.json()["id"]))

    async def stop(self) -> None:
        for learner in self.learners[1:]:
            await learner.http.aclose()
        await super().stop()

    async def begin_lesson(self, learner: Learner, companion_id: int) -> tuple[int, PostOffer]:
        response = await learner.http.post(f"{self.base_url}/api/companions/{companion_id}/lessons")
        _expect(response, 201, "start lesson")
        lesson_id = int(response.json()["id"])

        async def post_offer(offer: dict[str, Any]) -> dict[str, Any]:
            answer = await learner.http.post(f"{self.base_url}/api/lessons/{lesson_id}/offer", json=offer)
            _expect(answer, 200, "offer")
            body: dict[str, Any] = answer.json()
            return body

        return lesson_id, post_offer

    async def hang_up(self, learner: Learner, lesson_id: int) -> None:
        response = await learner.http.post(f"{self.base_url}/api/lessons/{lesson_id}/end")
        _expect(response, 200, "hang up")

    async def gauges(self) -> dict[str, float]:
        response = await self._http.get(
            f"{self.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        _expect(response, 200, "metrics")
        return parse_metrics(response.text, ("tutor_asyncio_tasks", "tutor_live_lessons", "tutor_process_threads"))

    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def probe(self) -> dict[str, Any] | None:
        """Ask the wrapper for its figures (SIGUSR1) and read them once written."""
        if self.probe_path is None or self.pid is None:
            return None
        self._probe_seq += 1
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + PROBE_TIMEOUT_SECS
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                found: dict[str, Any] = json.loads(self.probe_path.read_text())
                if found.get("seq") == self._probe_seq:
                    with self.probe_path.with_name("probes.jsonl").open("a") as log:
                        log.write(json.dumps(found) + "\n")
                    return found
            await asyncio.sleep(0.2)
        raise RuntimeError("the server's probe did not answer")


# -- rounds ----------------------------------------------------------------------------------------


@dataclass
class Round:
    index: int
    lessons: int
    failed_lessons: int
    turns: int
    unanswered_turns: int
    secs: float
    rest_secs: float
    rss_mb: float | None
    pss_mb: float | None
    uss_mb: float | None
    fds: float | None
    threads: float | None
    tasks: float | None
    live_lessons: float | None
    # The server's CPU seconds (all threads) from the round's start to its sample, per lesson.
    cpu_secs_per_lesson: float | None = None
    probe: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


async def one_lesson(
    target: SoakTarget,
    learner: Learner,
    companion_id: int,
    clips: list[Clip],
    turns: int,
    first_clip: int,
    rng: random.Random,
) -> tuple[int, int]:
    """Connect, hear the greeting, speak `turns` times, hang up; returns (turns taken, turns unanswered)."""
    await asyncio.sleep(rng.uniform(0, 1.5))  # a class does not all click "start" in the same instant
    lesson_id, post_offer = await target.begin_lesson(learner, companion_id)
    client = LessonClient()
    try:
        await client.connect(post_offer, timeout=60)
        assert client.offer_sent_at is not None
        await client.wait_for_audio(after=client.offer_sent_at, timeout=30)
        await client.wait_for_quiet(QUIET_SECS, timeout=60)
        pause = lambda: rng.uniform(0.5, 2.0)  # noqa: E731 -- a one-line policy reads best inline
        taken = await converse(client, target, clips, turns, pause, None, first_clip=first_clip)
        await target.hang_up(learner, lesson_id)
    finally:
        await client.close()
    return len(taken), sum(1 for t in taken if t.v2v is None)


async def wait_for_rest(target: SoakTarget, rest_secs: float) -> tuple[dict[str, float], float]:
    """Wait until no lesson is live on the server, then `rest_secs` more; the gauges and the seconds waited."""
    started = time.monotonic()
    gauges: dict[str, float] = {}
    while time.monotonic() - started < REST_TIMEOUT_SECS:
        gauges = await target.gauges()
        if gauges.get("tutor_live_lessons", 0) == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(rest_secs)
    gauges = await target.gauges()
    return gauges, time.monotonic() - started


async def run_round(
    target: SoakTarget, clips: list[Clip], index: int, k: int, turns: int, rest_secs: float, rng: random.Random
) -> Round:
    started = time.monotonic()
    assert target.pid is not None
    cpu_before = process_cpu_secs(target.pid)
    # Learner i takes lesson i of each round, with the next of its companions each time.
    lessons = []
    for i, learner in enumerate(target.learners[:k]):
        companion = learner.companion_ids[(index + i) % len(learner.companion_ids)]
        lessons.append(one_lesson(target, learner, companion, clips, turns, index * k + i, rng))
    outcomes = await asyncio.gather(*lessons, return_exceptions=True)
    secs = time.monotonic() - started
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    if not target.alive():
        raise RuntimeError("the server exited during the round")
    gauges, rested = await wait_for_rest(target, rest_secs)
    assert target.pid is not None
    figures = proc_figures(target.pid)
    cpu_after = process_cpu_secs(target.pid)
    probe = await target.probe()
    return Round(
        index=index + 1,
        lessons=k,
        failed_lessons=len(errors),
        turns=sum(t for t, _ in done),
        unanswered_turns=sum(u for _, u in done),
        secs=secs,
        rest_secs=rested,
        rss_mb=figures["rss_mb"],
        pss_mb=figures["pss_mb"],
        uss_mb=figures["uss_mb"],
        fds=figures["fds"],
        threads=figures["threads"],
        tasks=gauges.get("tutor_asyncio_tasks"),
        live_lessons=gauges.get("tutor_live_lessons"),
        cpu_secs_per_lesson=None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / k,
        probe=probe,
        errors=errors,
    )


# -- report ----------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def growth_per_lesson(rounds: list[Round], warmup: int, figure: str) -> float | None:
    """Least-squares slope of a resting figure (MB) against lessons run, over the rounds after `warmup`."""
    points = [
        (sum(r.lessons for r in rounds[: i + 1]), getattr(r, figure) if hasattr(r, figure) else None)
        for i, r in enumerate(rounds)
        if i >= warmup
    ]
    points = [(x, y) for x, y in points if y is not None]
    if len(points) < 2:
        return None
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return float(np.polyfit(xs, ys, 1)[0])


def probe_growth(rounds: list[Round], warmup: int, key: str) -> float | None:
    """The same slope for a figure of the probe (objects, malloc MB) per lesson."""
    points = []
    lessons = 0
    for i, r in enumerate(rounds):
        lessons += r.lessons
        if i >= warmup and r.probe is not None and r.probe.get(key) is not None:
            points.append((lessons, float(r.probe[key])))
    if len(points) < 2:
        return None
    return float(np.polyfit([p[0] for p in points], [p[1] for p in points], 1)[0])


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(rounds: list[Round], warmup: int, meta: dict[str, Any]) -> dict[str, Any]:
    first, last = (rounds[0], rounds[-1]) if rounds else (None, None)

    def first_last(name: str) -> list[float | None]:
        return [getattr(first, name, None), getattr(last, name, None)]

    summary: dict[str, Any] = {
        "meta": meta,
        "rounds": [asdict(r) for r in rounds],
        "lessons": sum(r.lessons for r in rounds),
        "failed_lessons": sum(r.failed_lessons for r in rounds),
        "turns": sum(r.turns for r in rounds),
        "unanswered_turns": sum(r.unanswered_turns for r in rounds),
        "warmup_rounds": warmup,
        "rss_mb_per_lesson": growth_per_lesson(rounds, warmup, "rss_mb"),
        "pss_mb_per_lesson": growth_per_lesson(rounds, warmup, "pss_mb"),
        "uss_mb_per_lesson": growth_per_lesson(rounds, warmup, "uss_mb"),
        "rss_first_last_mb": first_last("rss_mb"),
        "fds_first_last": first_last("fds"),
        "threads_first_last": first_last("threads"),
        "tasks_first_last": first_last("tasks"),
        "live_lessons_last": last.live_lessons if last else None,
        "cpu_secs_per_lesson": _mean([r.cpu_secs_per_lesson for r in rounds[warmup:]]),
    }
    if any(r.probe for r in rounds):
        summary["objects_per_lesson"] = probe_growth(rounds, warmup, "objects")
        summary["malloc_in_use_mb_per_lesson"] = probe_growth(rounds, warmup, "malloc_in_use_mb")
        summary["rss_after_trim_mb_per_lesson"] = probe_growth(rounds, warmup, "rss_after_trim_mb")
    return summary


def print_round(r: Round, out: Any = sys.stderr) -> None:
    probe = r.probe or {}
    extra = ""
    if probe:
        extra = (
            f"{probe.get('objects', 0):>10}{_fmt(probe.get('malloc_in_use_mb'), 1):>9}"
            f"{_fmt(probe.get('malloc_free_mb'), 1):>9}{_fmt(probe.get('rss_after_trim_mb'), 1):>9}"
        )
    print(
        f"{r.index:>5}{r.lessons - r.failed_lessons:>4}/{r.lessons:<3}{r.turns - r.unanswered_turns:>4}/{r.turns:<4}"
        f"{r.secs:>7.1f}{_fmt(r.rss_mb, 1):>9}{_fmt(r.pss_mb, 1):>9}{_fmt(r.uss_mb, 1):>9}"
        f"{_fmt(r.fds):>6}{_fmt(r.threads):>8}{_fmt(r.tasks):>7}{_fmt(r.live_lessons):>6}"
        f"{_fmt(r.cpu_secs_per_lesson, 1):>8}{extra}",
        file=out,
        flush=True,
    )
    for error in r.errors:
        print(f"        a lesson failed: {error}", file=out, flush=True)


def print_header(probe: bool, out: Any = sys.stderr) -> None:
    extra = f"{'objects':>10}{'malloc':>9}{'free':>9}{'trimmed':>9}" if probe else ""
    print(
        f"{'round':>5}{'lessons':>8}{'answered':>9}{'secs':>7}{'RSS MB':>9}{'PSS MB':>9}{'USS MB':>9}"
        f"{'fds':>6}{'threads':>8}{'tasks':>7}{'live':>6}{'CPU s':>8}{extra}",
        file=out,
        flush=True,
    )


def print_summary(summary: dict[str, Any], out: Any = sys.stdout) -> None:
    meta = summary["meta"]
    print(
        f"\nsoak: {summary['lessons']} lessons in {len(summary['rounds'])} rounds of {meta['k']} "
        f"({meta['turns']} turn(s) each), {meta['cpus']} CPUs, {meta['minutes']:.1f} min; "
        f"{summary['failed_lessons']} lessons failed, {summary['unanswered_turns']} of {summary['turns']} "
        "turns unanswered",
        file=out,
    )
    if summary["rounds"]:
        print_header("objects_per_lesson" in summary, out)
        for row in summary["rounds"]:
            print_round(Round(**row), out)

    def per_lesson(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f} MB a lesson"

    rss = summary["rss_mb_per_lesson"]
    verdict = "-" if rss is None else ("met" if rss < TARGET_MB_PER_LESSON else "missed")
    print(f"\nresting memory after the first {summary['warmup_rounds']} rounds (least squares over rounds):", file=out)
    print(f"  RSS {per_lesson(rss)}   (target < {TARGET_MB_PER_LESSON} MB a lesson: {verdict})", file=out)
    print(f"  PSS {per_lesson(summary['pss_mb_per_lesson'])}, USS {per_lesson(summary['uss_mb_per_lesson'])}", file=out)
    if "objects_per_lesson" in summary:
        objects = summary["objects_per_lesson"]
        print(
            f"  Python objects {'-' if objects is None else f'{objects:+.1f}'} a lesson, malloc in use "
            f"{per_lesson(summary['malloc_in_use_mb_per_lesson'])}, RSS after malloc_trim "
            f"{per_lesson(summary['rss_after_trim_mb_per_lesson'])}",
            file=out,
        )

    def pair(name: str) -> str:
        a, b = summary[name]
        return f"{_fmt(a)} -> {_fmt(b)}"

    print(
        f"first -> last round at rest: RSS {pair('rss_first_last_mb')} MB, fds {pair('fds_first_last')}, "
        f"threads {pair('threads_first_last')}, asyncio tasks {pair('tasks_first_last')}, "
        f"live lessons at the end {_fmt(summary['live_lessons_last'])}",
        file=out,
    )
    print(f"server CPU per lesson after the warm-up: {_fmt(summary['cpu_secs_per_lesson'], 2)} s", file=out)


# -- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    load = os.getloadavg()[0]
    cpus = len(os.sched_getaffinity(0))
    if load > 0.5:
        print(f"warning: load average {load:.2f} - other work on this machine will skew the timings", file=sys.stderr)
    print("synthesizing the learner's clips with piper", file=sys.stderr)
    clips = await asyncio.to_thread(make_clips)
    rng = random.Random(args.seed)
    rounds: list[Round] = []
    failure: str | None = None
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    with contextlib.ExitStack() as stack:
        log_dir = Path(args.log_dir) if args.log_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log_dir.mkdir(parents=True, exist_ok=True)
        llm = stack.enter_context(ScriptedLLM(TUTOR_REPLIES))
        target = SoakTarget(
            llm.base_url,
            log_dir,
            dict(args.server_env),
            learners=args.k,
            companions=args.companions,
            probe=args.probe or args.trim or args.tracemalloc > 0,
            trim=args.trim,
            tracemalloc_frames=args.tracemalloc,
        )
        try:
            await target.start()
            print(f"server up (pid {target.pid}); {args.rounds} rounds of {args.k} lessons", file=sys.stderr)
            gauges, _ = await wait_for_rest(target, 0.0)
            assert target.pid is not None
            idle = proc_figures(target.pid)
            print(
                f"at start: RSS {_fmt(idle['rss_mb'], 1)} MB, fds {_fmt(idle['fds'])}, threads "
                f"{_fmt(idle['threads'])}, tasks {_fmt(gauges.get('tutor_asyncio_tasks'))}",
                file=sys.stderr,
            )
            print_header(target.probe_path is not None)
            longest = 0.0
            for index in range(args.rounds):
                if time.monotonic() + longest > deadline:
                    print(f"stopping after {index} rounds: --max-minutes {args.max_minutes} reached", file=sys.stderr)
                    break
                round_started = time.monotonic()
                # The hard bound: a round that hangs past the deadline is an error, not a slow figure.
                remaining = max(60.0, deadline - round_started + 120.0)
                async with asyncio.timeout(remaining):
                    row = await run_round(target, clips, index, args.k, args.turns, args.rest_secs, rng)
                rounds.append(row)
                print_round(row)
                longest = max(longest, time.monotonic() - round_started)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            print(f"soak: FAILED: {failure}; the server's log is {target._log_path}", file=sys.stderr)
        finally:
            await target.stop()
        if failure and not args.log_dir:
            print("rerun with --log-dir DIR to keep the server's log", file=sys.stderr)

    meta = {
        "cpus": cpus,
        "load_at_start": round(load, 2),
        "k": args.k,
        "turns": args.turns,
        "rest_secs": args.rest_secs,
        "minutes": (time.monotonic() - started) / 60,
        "server_env": dict(args.server_env),
        "error": failure,
    }
    summary = summarize(rounds, min(args.warmup, max(0, len(rounds) - 2)), meta)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    lessons_failed = summary["failed_lessons"]
    return 1 if failure or lessons_failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Resting memory, fds, threads and tasks over many lessons.")
    parser.add_argument("--rounds", type=int, default=25, help="rounds of lessons (default 25)")
    parser.add_argument("--k", type=int, default=8, help="lessons at once in each round (default 8)")
    parser.add_argument("--turns", type=int, default=1, help="learner turns in each lesson (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="first rounds left out of the growth fit (default 3)")
    parser.add_argument("--rest-secs", type=float, default=10.0, help="rest after a round's lessons end (default 10)")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop starting rounds after this long")
    parser.add_argument("--companions", type=int, default=len(TOPICS), help="companions the lessons rotate over")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="extra environment for the server, e.g. MALLOC_ARENA_MAX=2; repeatable",
    )
    parser.add_argument("--probe", action="store_true", help="also sample Python objects and malloc in the server")
    parser.add_argument("--trim", action="store_true", help="with the probe: malloc_trim(0) after each sample")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, metavar="FRAMES", help="with the probe: trace allocations (slow)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-dir", help="keep the server's log (and the probe's last figures) here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


# -- the probe, inside the server process -----------------------------------------------------------

# Classes whose live instances after a round say which per-lesson object is kept (by qualified name).
WATCHED = (
    "LessonSession",
    "LessonTransport",
    "LessonWebRTCClient",
    "SmallWebRTCConnection",
    "RTCPeerConnection",
    "RTCDtlsTransport",
    "RTCIceTransport",
    "RTCSctpTransport",
    "PipelineWorker",
    "Pipeline",
    "FrameProcessor",
    "SharedPiperTTSService",
    "SharedWhisperSTTService",
    "LLMContext",
    "QuietAudioTrack",
    "Task",
    "Future",
    "Connection",
)


def _malloc_figures() -> dict[str, float]:
    """glibc's mallinfo2: bytes handed out (in use) and bytes free inside its arenas, in MB."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    mb = 1024 * 1024
    return {
        "malloc_in_use_mb": (info.uordblks + info.hblkhd) / mb,
        "malloc_free_mb": info.fordblks / mb,
        "malloc_mmapped_mb": info.hblkhd / mb,
    }


def _short(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:  # a repr that fails says nothing useful here
        text = "?"
    return f"{type(obj).__module__}.{type(obj).__qualname__}: {text[:160]}"


def _holders(objects: list[Any], grown: dict[str, int]) -> dict[str, list[Any]]:
    """For the types that grew most since the last probe: a few of their newest instances and what holds them."""
    import gc

    found: dict[str, list[Any]] = {}
    worst = sorted(grown, key=lambda n: -grown[n])[:4]
    for name in worst:
        instances = [o for o in objects if f"{type(o).__module__}.{type(o).__qualname__}" == name][-3:]
        rows = []
        for obj in instances:
            target = obj() if callable(obj) and type(obj).__name__ in ("ReferenceType", "KeyedRef") else None
            holders = [_short(h) for h in gc.get_referrers(obj) if h is not objects and h is not instances][:4]
            rows.append(
                {"object": _short(obj), "points_to": _short(target) if target is not None else None, "held_by": holders}
            )
        found[name] = rows
    return found


def _malloc_heaps() -> list[dict[str, float]]:
    """Per glibc arena (malloc_info's XML): MB taken from the system and MB free inside it."""
    import ctypes
    import re

    libc = ctypes.CDLL("libc.so.6")
    libc.open_memstream.restype = ctypes.c_void_p
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    xml = ctypes.string_at(buffer, size.value).decode()
    libc.free(buffer)
    heaps = []
    for match in re.finditer(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        body = match.group(2)
        free = sum(int(n) for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', body))
        current = re.search(r'<system type="current" size="(\d+)"', body)
        heaps.append(
            {
                "heap": int(match.group(1)),
                "system_mb": round(int(current.group(1)) / 2**20, 1) if current else 0.0,
                "free_mb": round(free / 2**20, 1),
            }
        )
    return heaps


def _probe_figures(state: dict[str, Any]) -> dict[str, Any]:
    import collections
    import gc
    import tracemalloc

    gc.collect()
    objects = gc.get_objects()
    by_type: collections.Counter[str] = collections.Counter()
    watched: collections.Counter[str] = collections.Counter()
    for obj in objects:
        cls = type(obj)
        by_type[f"{cls.__module__}.{cls.__qualname__}"] += 1
        for base in cls.__mro__:
            if base.__name__ in WATCHED:
                watched[base.__name__] += 1
    previous: collections.Counter[str] = state.get("by_type", collections.Counter())
    grown = {name: count - previous.get(name, 0) for name, count in by_type.items()}
    state["by_type"] = by_type
    figures: dict[str, Any] = {
        "objects": len(objects),
        "watched": dict(watched),
        "grown_since_last": dict(sorted(((n, g) for n, g in grown.items() if g > 0), key=lambda x: -x[1])[:25]),
    }
    figures["holders"] = _holders(objects, {n: g for n, g in grown.items() if g > 0} if previous else {})
    del objects
    figures.update(_malloc_figures())
    figures["heaps"] = _malloc_heaps()
    figures["rss_mb"] = proc_figures(os.getpid())["rss_mb"]
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                figures[line.split(":")[0].lower().replace("rss", "rss_") + "_mb"] = int(line.split()[1]) / 1024
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        before = state.get("snapshot")
        state["snapshot"] = snapshot
        figures["traced_mb"] = tracemalloc.get_traced_memory()[0] / 1024 / 1024
        if before is not None:
            stats = snapshot.compare_to(before, "traceback")[:12]
            figures["traced_growth"] = [
                {"kib": round(s.size_diff / 1024, 1), "count": s.count_diff, "where": s.traceback.format()[-6:]}
                for s in stats
                if s.size_diff > 0
            ]
    if os.environ.get("SOAK_PROBE_TRIM"):
        import ctypes

        trim_started = time.perf_counter()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        figures["trim_ms"] = round(1000 * (time.perf_counter() - trim_started), 1)
        figures["rss_after_trim_mb"] = proc_figures(os.getpid())["rss_mb"]
    return figures


def serve_with_probe(argv: list[str]) -> int:
    """`tutor <argv>` with a SIGUSR1 handler that writes the probe's figures to $SOAK_PROBE_FILE."""
    import threading
    import tracemalloc

    from server.cli import main as tutor_main

    path = Path(os.environ["SOAK_PROBE_FILE"])
    frames = int(os.environ.get("SOAK_TRACEMALLOC") or 0)
    if frames:
        tracemalloc.start(frames)
    state: dict[str, Any] = {"seq": 0}
    lock = threading.Lock()

    def on_signal(_signum: int, _frame: Any) -> None:
        # Python runs this on the main thread, which is the event loop's: nothing else moves while it counts.
        with lock:
            state["seq"] += 1
            figures = _probe_figures(state)
            figures["seq"] = state["seq"]
            scratch = path.with_suffix(".tmp")
            scratch.write_text(json.dumps(figures, indent=1))
            scratch.replace(path)

    signal.signal(signal.SIGUSR1, on_signal)
    return tutor_main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-with-probe"]:
        sys.exit(serve_with_probe(sys.argv[2:]))
    sys.exit(main())
