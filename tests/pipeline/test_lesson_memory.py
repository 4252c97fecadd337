"""A server that has held lessons lets go of them: freed model memory goes back, tasks and live lessons end."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable

import pytest

from server.pipeline.compute import CpuGate, MemoryReleaser, malloc_trim
from tests.pipeline.conftest import LessonFactory, VoiceLesson, is_status


def _wait_until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _call(gate: CpuGate, hold: threading.Event | None = None) -> threading.Thread:
    """One model call through the gate on its own thread, lasting until `hold` is set (or none)."""

    def run() -> None:
        with gate.slot():
            if hold is not None:
                hold.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_memory_goes_back_once_the_models_rest_and_not_while_they_work() -> None:
    gate = CpuGate(2)
    released: list[float] = []
    releaser = MemoryReleaser(gate, rest_secs=0.05, busy_interval_secs=60.0, release=lambda: released.append(0))
    try:
        # A server that has run no model call has nothing to give back.
        time.sleep(0.3)
        assert released == []

        hold = threading.Event()
        busy = _call(gate, hold)
        _wait_until(lambda: gate.waiting == 0 and gate._idle_since is None, "the call to start")
        _call(gate).join(10)  # a second call ends while the first still runs: the models are not resting
        time.sleep(0.3)
        assert released == [], "memory was released while a model call was running"

        hold.set()
        busy.join(10)
        _wait_until(lambda: len(released) == 1, "the release after the calls ended")
        time.sleep(0.3)
        assert len(released) == 1, "released again with no model call since"

        _call(gate).join(10)
        _wait_until(lambda: len(released) == 2, "the release after the next call")
    finally:
        releaser.close()


def test_a_busy_server_releases_in_a_lull_only_now_and_then() -> None:
    gate = CpuGate(1)
    released: list[float] = []
    # Models that never rest long: short lulls between calls, as when many lessons take turns.
    releaser = MemoryReleaser(
        gate, rest_secs=60.0, lull_secs=0.01, busy_interval_secs=60.0, release=lambda: released.append(0)
    )
    try:
        for _ in range(5):
            _call(gate).join(10)
            time.sleep(0.05)
        # Each call after a release faults its working memory in again: not after every lull.
        assert released == []
    finally:
        releaser.close()

    gate = CpuGate(1)
    releaser = MemoryReleaser(
        gate, rest_secs=60.0, lull_secs=0.01, busy_interval_secs=0.2, release=lambda: released.append(0)
    )
    try:
        _call(gate).join(10)
        _wait_until(lambda: len(released) == 1, "the release in a lull once the busy interval passed")
    finally:
        releaser.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_the_release_is_glibcs_malloc_trim() -> None:
    trim = malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: some memory was given back


def test_a_closed_releaser_stops_its_thread() -> None:
    gate = CpuGate(1)
    releaser = MemoryReleaser(gate, release=lambda: None)
    thread = releaser._thread
    assert thread is not None and thread.name == "voice-memory"
    releaser.close()
    assert not thread.is_alive()


GAUGES = ("tutor_asyncio_tasks", "tutor_live_lessons", "tutor_process_threads", "process_open_fds")


async def _gauges(lesson: VoiceLesson) -> dict[str, float]:
    response = await lesson.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200
    found = {}
    for line in (await response.get_data(as_text=True)).splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            found[name] = float(value)
    assert set(found) == set(GAUGES), found
    return found


@pytest.mark.voice
async def test_metrics_show_a_live_lesson_and_its_tasks_end_with_it(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson(["Sure."], OBSERVABILITY__METRICS_TOKEN="scrape-me")
    resting = await _gauges(lesson)
    assert resting["tutor_live_lessons"] == 0

    peer = await lesson.connect()
    await peer.wait_for_message(is_status("in-progress"), timeout=10)
    live = await _gauges(lesson)
    assert live["tutor_live_lessons"] == 1
    assert live["tutor_asyncio_tasks"] > resting["tutor_asyncio_tasks"]

    await lesson.hang_up()
    await peer.close()
    deadline = time.monotonic() + 15
    after = await _gauges(lesson)
    while after["tutor_asyncio_tasks"] > resting["tutor_asyncio_tasks"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        after = await _gauges(lesson)
    assert after["tutor_live_lessons"] == 0
    assert after["tutor_asyncio_tasks"] <= resting["tutor_asyncio_tasks"], "the ended lesson left tasks running"
