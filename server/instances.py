"""Server instances: each process registers and heartbeats, and lessons a dead process held are ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server import lessons
from server.store import instances as store
from server.store.db import Database
from server.timeutil import as_utc

log = logging.getLogger(__name__)

# Where the app keeps this process's InstanceKeeper (AppState.extras).
EXTRAS_KEY = "instance"
SERVER_RESTART = "server-restart"
SERVER_SHUTDOWN = "server-shutdown"
# An instance that missed this many heartbeats in a row is taken for dead. More than one, so a slow database
# round trip or a busy event loop does not end a live process's lessons.
MISSED_BEATS = 3


@dataclass(frozen=True)
class Instance:
    id: str
    hostname: str
    pid: int


def new_instance() -> Instance:
    """A fresh identity: random, so a restarted process (same host, even same pid) never passes for its dead self."""
    return Instance(id=secrets.token_hex(16), hostname=socket.gethostname()[:255], pid=os.getpid())


async def heartbeat(db: Database, instance: Instance, *, now: datetime | None = None) -> None:
    async with db.write() as session:
        await store.beat(session, instance.id, instance.hostname, instance.pid, now or datetime.now(UTC))


async def sweep(db: Database, heartbeat_secs: float, *, now: datetime | None = None) -> list[int]:
    """End the open lessons whose holder stopped beating, with `server-restart`; forget dead instances.

    A lesson ends at its holder's last heartbeat when that is known (the process died soon after it), else now.
    Returns the ids of the lessons ended.
    """
    now = now or datetime.now(UTC)
    live_since = now - timedelta(seconds=MISSED_BEATS * heartbeat_secs)
    async with db.read() as session:
        orphans = await store.orphaned_lessons(session, live_since)
    for orphan in orphans:
        started_at = as_utc(orphan.started_at)
        ended_at = now if orphan.last_heartbeat is None else max(as_utc(orphan.last_heartbeat), started_at)
        # end_lesson keeps the first end, so two instances sweeping at once end each lesson once.
        await lessons.end_lesson(db, orphan.lesson_id, SERVER_RESTART, ended_at=ended_at)
    if orphans:
        log.warning("ended lessons %s: the server process holding them stopped", [o.lesson_id for o in orphans])
    async with db.write() as session:
        await store.remove_stale(session, live_since)
    return [o.lesson_id for o in orphans]


async def end_held_lessons(db: Database, instance: Instance, reason: str = SERVER_SHUTDOWN) -> list[int]:
    """End every lesson this instance still holds open (a clean shutdown)."""
    async with db.read() as session:
        held = await store.open_held_by(session, instance.id)
    for lesson_id in held:
        await lessons.end_lesson(db, lesson_id, reason)
    return held


async def deregister(db: Database, instance: Instance) -> None:
    async with db.write() as session:
        await store.remove(session, instance.id)


class InstanceKeeper:
    """This process's instance: registered and swept at start, then a heartbeat (and a sweep) in the background."""

    def __init__(
        self,
        db: Database,
        heartbeat_secs: float,
        instance: Instance | None = None,
        on_swept: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> None:
        """`on_swept(lesson_ids)`: told of the lessons a sweep ended (their recaps are written as any lesson's)."""
        self.db = db
        self.heartbeat_secs = heartbeat_secs
        self.instance = instance or new_instance()
        self._on_swept = on_swept
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.instance.id

    @classmethod
    def holder_id(cls, extras: dict[str, object]) -> str | None:
        """The id of the keeper kept in an app's extras, if the app has started one."""
        keeper = extras.get(EXTRAS_KEY)
        return keeper.id if isinstance(keeper, cls) else None

    async def start(self) -> None:
        await heartbeat(self.db, self.instance)
        await self._sweep()
        self._task = asyncio.create_task(self._beat_forever(), name="instance-heartbeat")

    async def _sweep(self) -> None:
        ended = await sweep(self.db, self.heartbeat_secs)
        if ended and self._on_swept is not None:
            try:
                await self._on_swept(ended)
            except Exception:  # the lessons are ended either way; only what follows their end is lost
                log.exception("instance %s: handling the lessons a sweep ended failed", self.id)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_secs)
            try:
                await heartbeat(self.db, self.instance)
                await self._sweep()
            except Exception:
                # A database outage must not stop the heartbeat for good: the next beat tries again.
                log.exception("instance %s: heartbeat failed; next try in %ss", self.id, self.heartbeat_secs)

    async def stop(self) -> list[int]:
        """A clean shutdown: stop beating, end the lessons still held with `server-shutdown`, remove the row.

        Returns the ids of the lessons it ended.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        ended = await end_held_lessons(self.db, self.instance)
        await deregister(self.db, self.instance)
        return ended
