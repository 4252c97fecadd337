"""Model calls take turns for the machine's cores, the ones a learner is waiting for first; what they free goes back."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class _Waiter:
    urgent_at: float
    order: int


class CpuGate:
    """At most `slots` model calls run at once; the others wait, urgent ones first, then in arrival order.

    Every lesson's Whisper, smart-turn and piper calls run on threads of their own, so without this up to seven
    of them share two cores and each runs at a fraction of its speed: the learner who has just stopped talking
    waits for a transcription slowed down by other lessons' sentences made seconds ahead of need. With a call
    per core, an urgent call waits at most for a running one to end and then has a core to itself.

    A call made ahead of need (`urgent_at` in the future: speech while earlier audio still plays) queues behind
    the urgent ones until `urgent_at`, and from then on counts as urgent, so it is never left waiting until the
    learner hears the silence.
    """

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._free = self.slots
        self._waiting: list[_Waiter] = []
        self._orders = 0
        self._changed = threading.Condition()
        # Calls finished, and when the last one ended with none running or waiting (None while busy).
        self.calls = 0
        self._idle_since: float | None = time.monotonic()

    @contextmanager
    def slot(self, urgent_at: float = 0.0) -> Iterator[None]:
        """Hold a slot for one model call (blocking: call it on a worker thread).

        `urgent_at`: time.monotonic() from which the call is urgent; the default is now.
        """
        with self._changed:
            self._orders += 1
            me = _Waiter(urgent_at, self._orders)
            self._waiting.append(me)
            while True:
                now = time.monotonic()
                if self._free > 0 and self._first(now) is me:
                    break
                # Woken when a slot frees, and at urgent_at, when this call may go ahead of others.
                self._changed.wait(urgent_at - now if urgent_at > now else None)
            self._waiting.remove(me)
            self._free -= 1
            self._idle_since = None
            self._changed.notify_all()  # a slot may still be free for the next in line
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self.calls += 1
                if self._free == self.slots and not self._waiting:
                    self._idle_since = time.monotonic()
                self._changed.notify_all()

    def _first(self, now: float) -> _Waiter:
        return min(self._waiting, key=lambda w: (w.urgent_at > now, w.order))

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        with self._changed:
            return len(self._waiting)


class MemoryReleaser:
    """Gives the OS back the memory that model calls freed, once the models rest.

    Each Whisper, smart-turn and piper call allocates its working memory (tens of MB) on its worker thread and
    frees it at the end, and glibc keeps what was freed inside that thread's arena rather than returning it:
    CTranslate2's buffers, piper's clause-sized tensors (which onnxruntime gives back after each run, see
    models.ShrinkingSession) and the audio around them. Over a school day of lessons, with different threads
    landing in different arenas, a resting server's resident memory grew by about 3 MB a lesson with no Python
    object or allocation alive to account for it (bench/soak.py). malloc_trim(0) hands every free page of
    every arena back.

    The next model call after a release faults its working memory in again (about 30 ms more for a
    transcription), so releases wait for the models to have rested `rest_secs`, which a lesson's turns seldom
    leave them; on a day so busy that they never do, a lull of `lull_secs` is taken once `busy_interval_secs`
    have passed since the last release.
    """

    def __init__(
        self,
        gate: CpuGate,
        rest_secs: float = 8.0,
        lull_secs: float = 2.0,
        busy_interval_secs: float = 300.0,
        release: Callable[[], object] | None = None,
    ) -> None:
        self._gate = gate
        self._rest_secs = rest_secs
        self._lull_secs = lull_secs
        self._busy_interval = busy_interval_secs
        self._release = release if release is not None else malloc_trim()
        self._closed = False
        self.releases = 0
        self._thread: threading.Thread | None = None
        if self._release is not None:
            self._thread = threading.Thread(target=self._run, name="voice-memory", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._gate._changed:
            self._closed = True
            self._gate._changed.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def _due_in(self, calls_released: int, released_at: float) -> float | None:
        """Seconds until a release is due (0: now); None while calls run or none ran since the last release."""
        gate = self._gate
        idle_since = gate._idle_since
        if gate.calls == calls_released or idle_since is None:
            return None
        due = min(idle_since + self._rest_secs, max(idle_since + self._lull_secs, released_at + self._busy_interval))
        return max(0.0, due - time.monotonic())

    def _run(self) -> None:
        assert self._release is not None
        calls_released, released_at = 0, time.monotonic()
        while True:
            with self._gate._changed:
                while not self._closed:
                    due = self._due_in(calls_released, released_at)
                    if due == 0.0:
                        break
                    self._gate._changed.wait(due)
                if self._closed:
                    return
                calls_released = self._gate.calls
            # Outside the gate's lock: a call that starts meanwhile waits only for glibc's arena locks.
            self._release()
            released_at = time.monotonic()
            self.releases += 1


def malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class GatedSession:
    """An onnxruntime session (or a wrapper of one) whose every run takes a slot of `gate`, as urgent."""

    def __init__(self, session: Any, gate: CpuGate) -> None:
        self._session = session
        self._gate = gate

    def run(self, *args: Any, **kwargs: Any) -> Any:
        with self._gate.slot():
            return self._session.run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
