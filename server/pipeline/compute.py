"""The one owner of the machine's cores for model work: the pools and threads lessons' models run on, their OS
names and priorities, the CPU gate they take turns at, and the release of the memory they free."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from server.settings import VoiceSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter:
    urgent_at: float
    order: int


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity, which a container's cpuset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def gated(gate: CpuGate, fn: Callable[..., T], urgent_at: float = 0.0) -> Callable[..., T]:
    """`fn` holding a slot of `gate` while it runs, urgent from `urgent_at` (for calls handed to an executor)."""

    def call(*args: Any) -> T:
        with gate.slot(urgent_at):
            return fn(*args)

    return call


# Nice value of the threads that synthesize sentences ahead of need: the OS runs the replies that someone is
# waiting for (and every lesson's audio) first, and these with the cores' remaining time (CFS weight 335
# against 1024), which is still several times faster than the audio plays.
BACKGROUND_NICE = 5


def name_os_thread() -> None:
    """Give the calling thread's Python name to the OS thread, so `top -H`, `ps -L` and py-spy show which pool
    spends a lesson's CPU (Linux keeps 15 characters; elsewhere, or without libc, nothing changes)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, threading.current_thread().name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (AttributeError, OSError):  # not Linux
        pass


def _lower_thread_priority() -> None:
    """Run the calling thread at BACKGROUND_NICE (Linux: a thread id is a valid PRIO_PROCESS target)."""
    name_os_thread()
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the pool still works
        log.debug("voice: cannot lower a synthesis thread's priority: %s", exc)


def thread_pool(name: str, workers: int, *, background: bool = False) -> ThreadPoolExecutor:
    """A pool of `workers` threads named `name_0`, `name_1`... for the OS too; `background`: at BACKGROUND_NICE."""
    initializer = _lower_thread_priority if background else name_os_thread
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=initializer)


# (name, target, count) -> the started threads; what a component that needs threads of its own is given.
ThreadStarter = Callable[[str, Callable[[], object], int], list[threading.Thread]]


def start_threads(name: str, target: Callable[[], object], count: int) -> list[threading.Thread]:
    """Start `count` daemon threads running `target`, named `name-0`, `name-1`... in Python and for the OS."""

    def run() -> None:
        name_os_thread()
        target()

    threads = [threading.Thread(target=run, name=f"{name}-{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


@dataclass
class Compute:
    """The process's CPU gate and the pools every lesson's model work runs on, made and closed together."""

    # Whisper, smart-turn and piper calls: one per core at a time, urgent ones first. Silero's millisecond
    # calls stay outside it.
    gate: CpuGate
    tts_executor: ThreadPoolExecutor
    # Sentences that are not needed yet (earlier audio is still playing): lower OS priority, see tts.py.
    tts_background_executor: ThreadPoolExecutor
    turn_executor: ThreadPoolExecutor
    vad_executor: ThreadPoolExecutor
    # Returns the memory the model calls freed to the OS when they rest; None where it cannot.
    memory_releaser: MemoryReleaser | None = None

    @classmethod
    def for_machine(cls, settings: VoiceSettings, cpu_count: int) -> Compute:
        """The gate and pools for a machine whose lessons may use `cpu_count` cores."""
        workers = max(1, cpu_count)
        gate = CpuGate(cpu_count)
        return cls(
            gate=gate,
            tts_executor=thread_pool("voice-tts", settings.tts.workers),
            # One thread: on few cores more would add no speed, and each piper run at once needs its own working
            # memory (tens to hundreds of MB while it runs).
            tts_background_executor=thread_pool("voice-tts-later", 1, background=True),
            turn_executor=thread_pool("voice-turn", workers),
            vad_executor=thread_pool("voice-vad", workers),
            memory_releaser=MemoryReleaser(gate),
        )

    def close(self) -> None:
        """Stop the pools (queued work is dropped) and the memory releaser."""
        executors = (self.tts_executor, self.tts_background_executor, self.turn_executor, self.vad_executor)
        for executor in executors:
            executor.shutdown(wait=False, cancel_futures=True)
        if self.memory_releaser is not None:
            self.memory_releaser.close()
