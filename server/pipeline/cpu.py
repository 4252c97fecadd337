"""Model calls take turns for the machine's cores, the ones a learner is waiting for first."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
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
            self._changed.notify_all()  # a slot may still be free for the next in line
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()

    def _first(self, now: float) -> _Waiter:
        return min(self._waiting, key=lambda w: (w.urgent_at > now, w.order))

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        with self._changed:
            return len(self._waiting)


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
