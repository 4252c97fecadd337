"""The CPU gate: model calls take turns for the cores, a waiting learner's first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from server.pipeline.cpu import CpuGate, GatedSession


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
