"""API benchmark: seeds a school-sized database, serves it with `tutor serve` and measures routes with wrk.

Run as ``python -m bench.api`` (see ``--help``). For each backend (SQLite, then a throwaway PostgreSQL 15
cluster) it creates the schema with ``Database.upgrade()``, bulk-inserts learners, companions, lessons and
bookmarks through SQLAlchemy Core, starts the real server (`tutor serve`: uvicorn) in a subprocess on a
loopback port (speech models not preloaded), signs in through ``POST /api/auth/login`` and drives each route
with ``wrk`` at a fixed concurrency for a fixed time, after a warm-up. ``GET /healthz`` of the same server in
the same run is the framework's ceiling; every other route is reported beside it as a ratio.

The machine has two cores, so the split is one server process and one wrk thread (PostgreSQL's backends share
the cores with both, which is part of what that column measures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # so `python bench/api.py` finds `server` and `harness` like `python -m bench.api`
    sys.path.insert(0, str(REPO))

from argon2 import PasswordHasher  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from server.companions import SUBJECTS  # noqa: E402
from server.store.db import Database  # noqa: E402
from server.store.models import Bookmark, Companion, Lesson, User  # noqa: E402

PASSWORD = "bench password 1234"
SEED = 20260501
# The seed's topics put this word in about one topic in five, so the filtered list has a few hundred matches.
COMMON_WORD = "basics"
OPENERS = ("The basics of", "Introduction to", "Understanding", "Exploring", "A deep dive into")
THEMES = {
    "maths": ("fractions", "algebra", "geometry", "probability", "calculus", "statistics"),
    "language": ("French verbs", "Spanish travel phrases", "English idioms", "German cases", "poetry"),
    "science": ("photosynthesis", "the water cycle", "electricity", "cells", "gravity", "chemical bonds"),
    "history": (
        "the Romans",
        "the industrial revolution",
        "ancient Egypt",
        "the cold war",
        "the Renaissance",
    ),
    "coding": ("Python loops", "recursion", "web pages", "databases", "sorting algorithms"),
    "geography": ("volcanoes", "rivers", "climate zones", "maps", "plate tectonics"),
    "economics": ("supply and demand", "inflation", "trade", "markets", "taxes"),
    "finance": ("budgeting", "compound interest", "saving", "shares", "credit"),
    "business": ("marketing", "startups", "leadership", "negotiation", "accounting"),
}
NAMES = ("Neura", "Countsy", "Lexi", "Atomo", "Chrono", "Pixel", "Terra", "Penny", "Bizzy", "Sage", "Echo")
ADJECTIVES = ("Curious", "Patient", "Witty", "Calm", "Bright", "Bold", "Gentle", "Clever")


@dataclass(frozen=True)
class Scale:
    learners: int
    companions: int
    lessons: int
    bookmarks: int

    @classmethod
    def of(cls, fraction: float) -> Scale:
        def part(n: int) -> int:
            return max(1, round(n * fraction))

        return cls(learners=part(1000), companions=part(10_000), lessons=part(50_000), bookmarks=part(5_000))


@dataclass(frozen=True)
class Seeded:
    """What the load phase needs from the seed: who signs in and which companions they can bookmark."""

    email: str
    companion_ids: list[int]
    seconds: float


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    # The toggle alternates PUT and DELETE of a bookmark; each counts as one request.
    toggle: bool = False


@dataclass
class Result:
    endpoint: str
    backend: str
    server: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    bad_status: int
    socket_errors: int
    # Server process CPU (all its threads) per request: steadier than req/s when other work shares the cores.
    cpu_ms: float
    items: int
    # The machine's 1-minute load average when the run ended: above the two cores, req/s and p99 say more about
    # the other work than about the server.
    load: float = 0.0
    ratio: float | None = None


def _rows_in(batch: list[dict[str, Any]], size: int = 2000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(batch), size):
        yield batch[start : start + size]


async def seed(url: str, scale: Scale) -> Seeded:
    """Create the schema and bulk-insert the school; one argon2 hash is shared by every learner."""
    started = time.perf_counter()
    rng = random.Random(SEED)
    db = Database(url)
    try:
        await db.upgrade()
        now = datetime.now(UTC)
        password_hash = PasswordHasher().hash(PASSWORD)
        users = [
            {
                "email": f"learner{i}@school.test",
                "name": f"Learner {i}",
                "password_hash": password_hash,
                "plan": ("free", "core", "pro")[i % 3],
                "role": "learner",
                "created_at": now - timedelta(days=400, minutes=i),
            }
            for i in range(scale.learners)
        ]
        async with db.engine.begin() as conn:
            for chunk in _rows_in(users):
                await conn.execute(insert(User), chunk)
            user_ids = list((await conn.execute(select(User.id).order_by(User.id))).scalars())
            companions = []
            for i in range(scale.companions):
                subject = SUBJECTS[i % len(SUBJECTS)]
                created = now - timedelta(seconds=rng.randrange(365 * 86400))
                companions.append(
                    {
                        "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NAMES)} {i}",
                        "subject": subject,
                        "topic": f"{rng.choice(OPENERS)} {rng.choice(THEMES[subject])}",
                        "voice": "en_US-joe-medium",
                        "style": rng.choice(("formal", "casual")),
                        "duration": rng.randint(5, 60),
                        "author_id": rng.choice(user_ids),
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            for chunk in _rows_in(companions):
                await conn.execute(insert(Companion), chunk)
            companion_ids = list((await conn.execute(select(Companion.id).order_by(Companion.id))).scalars())
            lessons = []
            for _ in range(scale.lessons):
                started_at = now - timedelta(seconds=rng.randrange(365 * 86400))
                length = rng.randint(30, 1800)
                lessons.append(
                    {
                        "companion_id": rng.choice(companion_ids),
                        "learner_id": rng.choice(user_ids),
                        "started_at": started_at,
                        "ended_at": started_at + timedelta(seconds=length),
                        "length_seconds": length,
                        "end_reason": "customer-ended-call",
                    }
                )
            for chunk in _rows_in(lessons):
                await conn.execute(insert(Lesson), chunk)
            pairs = {(rng.choice(user_ids), rng.choice(companion_ids)) for _ in range(scale.bookmarks)}
            bookmarks = [
                {"learner_id": learner, "companion_id": companion, "created_at": now} for learner, companion in pairs
            ]
            for chunk in _rows_in(bookmarks):
                await conn.execute(insert(Bookmark), chunk)
        # Fresh statistics, as a school's long-lived database would have, so the planners pick real plans.
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await db.close()
    # The signed-in learner bookmarks companions other than the seed's, from the middle of the id range.
    middle = len(companion_ids) // 2
    return Seeded(
        email=str(users[0]["email"]),
        companion_ids=companion_ids[middle : middle + 64],
        seconds=time.perf_counter() - started,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(url: str, data_dir: Path, log_path: Path) -> Iterator[Server]:
    """Run `tutor serve` in its own process on a loopback port; yield it; stop it afterwards."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
    env.update(
        {
            "TUTOR_DATABASE__URL": url,
            "TUTOR_SERVER__DATA_DIR": str(data_dir),
            "TUTOR_SERVER__SECRET_KEY": secrets.token_urlsafe(32),
            "TUTOR_SERVER__LOG_LEVEL": "WARNING",
            "TUTOR_VOICE__PRELOAD": "false",
            "PYTHONPATH": str(REPO),
        }
    )
    command = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    # cwd is the data dir, so a config.toml in the caller's directory cannot change what is measured.
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer /healthz: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Server(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sign_in(base: str, email: str) -> str:
    """The `Cookie` header value of a fresh session for this learner."""
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"{base}/api/auth/login", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            if header.startswith("tutor_session="):
                return header.split(";", 1)[0]
    raise RuntimeError("login answered without a tutor_session cookie")


def check(base: str, cookie: str, endpoint: Endpoint, companion_id: int) -> int:
    """Fail before measuring if a route does not answer as it should; return how many items it listed."""
    items: list[Any] = []
    methods = [("PUT", 204), ("DELETE", 204)] if endpoint.toggle else [(endpoint.method, 200)]
    for method, status in methods:
        path = endpoint.path.replace("{id}", str(companion_id))
        request = urllib.request.Request(f"{base}{path}", headers={"Cookie": cookie}, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != status:
                raise RuntimeError(f"{method} {path} answered {response.status}, expected {status}")
            if status == 200:
                body = json.loads(response.read())
                items = body.get("items", [body])
    return len(items)


LUA_REPORT = """
done = function(summary, latency, requests)
  local bad = summary.errors.status
  local sock = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"bad_status": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad, sock))
end
"""


def lua_script(cookie: str, endpoint: Endpoint, companion_ids: list[int]) -> str:
    """wrk's script: the sign-in cookie on every request, and for the toggle alternating PUT and DELETE."""
    lines = [f"wrk.headers['Cookie'] = {json.dumps(cookie)}"]
    if endpoint.toggle:
        ids = ", ".join(str(i) for i in companion_ids)
        lines.append(
            f"""
local ids = {{{ids}}}
local n = 0
request = function()
  n = n + 1
  local id = ids[(math.floor(n / 2) % #ids) + 1]
  local method = (n % 2 == 0) and 'PUT' or 'DELETE'
  return wrk.format(method, '/api/companions/' .. id .. '/bookmark')
end
"""
        )
    lines.append(LUA_REPORT)
    return "\n".join(lines)


def run_wrk(
    base: str, script: Path, path: str, *, connections: int, seconds: float, threads: int = 1
) -> dict[str, int]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"{base}{path}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            parsed: dict[str, int] = json.loads(line[len("RESULT ") :])
            return parsed
    raise RuntimeError(f"wrk printed no result:\n{output}")


def endpoints() -> list[Endpoint]:
    return [
        Endpoint("healthz (ceiling)", "GET", "/healthz"),
        Endpoint(
            "companions filtered",
            "GET",
            f"/api/companions?subject=science&topic={COMMON_WORD}&page=3&limit=12",
        ),
        Endpoint("lessons recent", "GET", "/api/lessons/recent?limit=10"),
        Endpoint("me lessons", "GET", "/api/me/lessons?limit=20"),
        Endpoint("bookmark toggle", "PUT", "/api/companions/{id}/bookmark", toggle=True),
    ]


def measure(
    backend: str, url: str, workdir: Path, scale: Scale, *, connections: int, duration: float, warmup: float
) -> list[Result]:
    print(f"[{backend}] seeding {scale} ...", file=sys.stderr, flush=True)
    seeded = asyncio.run(seed(url, scale))
    print(f"[{backend}] seeded in {seeded.seconds:.1f} s; starting the server", file=sys.stderr, flush=True)
    results: list[Result] = []
    data_dir = workdir / f"{backend}-server"
    data_dir.mkdir(exist_ok=True)
    with serving(url, data_dir, workdir / f"{backend}-server.log") as server:
        base = server.base
        cookie = sign_in(base, seeded.email)
        for endpoint in endpoints():
            items = check(base, cookie, endpoint, seeded.companion_ids[0])
            script = workdir / f"{backend}-{len(results)}.lua"
            script.write_text(lua_script(cookie, endpoint, seeded.companion_ids))
            target = endpoint.path.replace("{id}", str(seeded.companion_ids[0]))
            if warmup > 0:
                run_wrk(base, script, target, connections=connections, seconds=warmup)
            cpu_before = server.cpu_seconds()
            raw = run_wrk(base, script, target, connections=connections, seconds=duration)
            cpu = server.cpu_seconds() - cpu_before
            seconds = raw["duration_us"] / 1e6
            result = Result(
                endpoint=endpoint.name,
                backend=backend,
                server="uvicorn",
                requests=raw["requests"],
                seconds=round(seconds, 2),
                rps=round(raw["requests"] / seconds, 1),
                p50_ms=round(raw["p50_us"] / 1000, 2),
                p99_ms=round(raw["p99_us"] / 1000, 2),
                bad_status=raw["bad_status"],
                socket_errors=raw["socket_errors"],
                cpu_ms=round(1000 * cpu / max(1, raw["requests"]), 3),
                items=items,
                load=round(os.getloadavg()[0], 2),
            )
            results.append(result)
            print(
                f"[{backend}] {endpoint.name}: {result.rps} req/s, p50 {result.p50_ms} ms, "
                f"p99 {result.p99_ms} ms, server CPU {result.cpu_ms} ms/request, load {result.load}",
                file=sys.stderr,
                flush=True,
            )
    ceiling = results[0].rps
    for result in results:
        result.ratio = round(result.rps / ceiling, 3) if ceiling else None
    return results


def table(results: list[Result]) -> str:
    header = (
        "endpoint",
        "backend",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x ceiling",
        "CPU ms/req",
        "items",
        "errors",
        "load",
    )
    rows = [
        (
            r.endpoint,
            r.backend,
            f"{r.rps:.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            "" if r.ratio is None else f"{r.ratio:.2f}",
            f"{r.cpu_ms:.2f}",
            str(r.items),
            str(r.bad_status + r.socket_errors),
            f"{r.load:.2f}",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per route (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent wrk connections (default 16)")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="measure one backend")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the seed sizes (1.0 = 10k companions, 50k lessons)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, server logs)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.duration <= 0 or args.connections < 1:
        parser.error("--scale, --duration and --connections must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench/api.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    scale = Scale.of(args.scale)
    workdir = Path(tempfile.mkdtemp(prefix="tutor-bench-"))
    results: list[Result] = []
    options = {"connections": args.connections, "duration": args.duration, "warmup": args.warmup}
    try:
        if args.only in (None, "sqlite"):
            url = f"sqlite+aiosqlite:///{workdir / 'sqlite' / 'tutor.db'}"
            results += measure("sqlite", url, workdir, scale, **options)
        if args.only in (None, "postgres"):
            from harness.postgres import PostgresCluster

            with PostgresCluster() as cluster:
                results += measure("postgres", cluster.new_database(), workdir, scale, **options)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        meta = {
            "connections": args.connections,
            "duration": args.duration,
            "warmup": args.warmup,
            "scale": asdict(scale),
        }
        print(json.dumps({"settings": meta, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"{args.connections} connections, 1 wrk thread, 1 server process, {args.duration:g} s per route")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
