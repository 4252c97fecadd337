"""The compute: model calls take turns for the cores, a waiting learner's first, on pools and threads an operator
can tell apart."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

import pytest

from server.pipeline.compute import BACKGROUND_NICE, Compute, CpuGate, GatedSession, start_threads
from server.settings import VoiceSettings


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


class _Calls:
    """Threads that each make one call through the gate and note the order they got a slot in."""

    def __init__(self, gate: CpuGate) -> None:
        self.gate = gate
        self.order: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self, name: str, urgent_at: float = 0.0) -> None:
        waiting = self.gate.waiting

        def call() -> None:
            with self.gate.slot(urgent_at):
                self.order.append(name)

        thread = threading.Thread(target=call, daemon=True)
        self.threads.append(thread)
        thread.start()
        _wait_until(lambda: self.gate.waiting == waiting + 1, f"{name} to queue")

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive(), "a call never got a slot"


def _hold_every_slot(gate: CpuGate) -> threading.Event:
    """Occupy all of the gate's slots until the returned event is set."""
    release = threading.Event()
    held = threading.Barrier(gate.slots + 1)

    def hold() -> None:
        with gate.slot():
            held.wait(10)
            release.wait(10)

    for _ in range(gate.slots):
        threading.Thread(target=hold, daemon=True).start()
    held.wait(10)
    return release


def test_no_more_model_calls_run_at_once_than_the_gate_has_cores() -> None:
    gate = CpuGate(2)
    running = 0
    most = 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, most
        with gate.slot():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 2
    assert running == 0 and gate.waiting == 0


def _order_once_free(queued: list[tuple[str, float]], release_after: float = 0.0) -> list[str]:
    """Calls (name, urgent_at) queued in this order behind a full one-slot gate: the order they get the slot in
    once it frees, at `release_after` (time.monotonic()) or at once."""
    gate = CpuGate(1)
    release = _hold_every_slot(gate)
    calls = _Calls(gate)
    for name, urgent_at in queued:
        calls.start(name, urgent_at=urgent_at)
    _wait_until(lambda: time.monotonic() > release_after, "the time to free the slot")
    release.set()
    calls.join()
    return calls.order


def test_a_waiting_learners_call_goes_before_speech_made_ahead_of_need() -> None:
    far_ahead = time.monotonic() + 60
    order = _order_once_free(
        [("later sentence", far_ahead), ("another later sentence", far_ahead), ("transcription", 0.0)]
    )
    assert order == ["transcription", "later sentence", "another later sentence"]


def test_speech_made_ahead_of_need_stops_giving_way_once_its_audio_is_due() -> None:
    # A sentence queued ahead of need must not wait behind new urgent calls for ever: from its urgent_at it
    # takes its place in arrival order, ahead of calls that came after it.
    due = time.monotonic() + 0.05
    order = _order_once_free([("later sentence", due), ("transcription", 0.0)], release_after=due)
    assert order == ["later sentence", "transcription"]


def test_a_failing_call_gives_its_slot_back() -> None:
    gate = CpuGate(1)

    class Broken:
        def run(self, *args: object) -> None:
            raise RuntimeError("model failed")

    session = GatedSession(Broken(), gate)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            session.run(None, {})
    got_in = threading.Event()

    def call() -> None:
        with gate.slot():
            got_in.set()

    threading.Thread(target=call, daemon=True).start()
    assert got_in.wait(10), "the failed calls kept the gate's only slot"


T = TypeVar("T")


def _os_name(thread_id: int) -> str:
    return Path(f"/proc/self/task/{thread_id}/comm").read_text().strip()


def _on(pool: Executor, fn: Callable[[], T]) -> T:
    return pool.submit(fn).result(10)


@pytest.fixture
def compute() -> Iterator[Compute]:
    made = Compute.for_machine(VoiceSettings(), cpu_count=2)
    yield made
    made.close()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux thread names")
def test_every_pool_a_lesson_uses_is_named_for_top_and_ps(compute: Compute) -> None:
    # An operator looking at `top -H` sees which part of the pipeline spends the CPU (Linux keeps 15 characters).
    pools = {
        "voice-tts_0": compute.tts_executor,
        "voice-tts-later": compute.tts_background_executor,
        "voice-turn_0": compute.turn_executor,
        "voice-vad_0": compute.vad_executor,
    }
    for expected, pool in pools.items():
        assert _os_name(_on(pool, threading.get_native_id)) == expected


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux thread names")
def test_threads_started_for_whisper_carry_their_names_for_the_os() -> None:
    stop = threading.Event()
    threads = start_threads("voice-stt", lambda: stop.wait(10), 2)
    try:
        assert [t.name for t in threads] == ["voice-stt-0", "voice-stt-1"]
        assert all(t.daemon for t in threads), "a stuck transcription must not keep the server from exiting"
        for thread in threads:
            assert thread.native_id is not None
            deadline = time.monotonic() + 10
            while _os_name(thread.native_id) != thread.name and time.monotonic() < deadline:
                time.sleep(0.005)
            assert _os_name(thread.native_id) == thread.name
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_speech_made_ahead_of_need_runs_at_a_lower_os_priority(compute: Compute) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base >= BACKGROUND_NICE:
        pytest.skip("the server already runs at or below the background priority")

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    # Replies someone is waiting for keep the server's priority; sentences made ahead of need give way.
    assert _on(compute.tts_executor, nice) == base
    assert _on(compute.tts_background_executor, nice) == BACKGROUND_NICE


def test_the_gate_has_a_slot_per_core_and_closing_stops_every_pool() -> None:
    compute = Compute.for_machine(VoiceSettings(), cpu_count=3)
    assert compute.gate.slots == 3
    releaser = compute.memory_releaser
    compute.close()
    for pool in (compute.tts_executor, compute.tts_background_executor, compute.turn_executor, compute.vad_executor):
        with pytest.raises(RuntimeError):
            pool.submit(time.sleep, 0)
    assert releaser is not None
    assert releaser._thread is None or not releaser._thread.is_alive()
