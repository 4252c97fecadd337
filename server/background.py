"""Work started off a lesson's or a request's path (storing a screening result, judging a quiz): each task is kept
until it is done, logged when it fails, and waited for (then cancelled) when the app stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """A set of running tasks; `failure` is what the log says when one fails (with its traceback)."""

    def __init__(self, log: logging.Logger, failure: str) -> None:
        self._log = log
        self._failure = failure
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `work` in the background (returns at once)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error(self._failure, exc_info=task.exception())

    async def idle(self, within: float = 10.0) -> None:
        """Wait until every task started so far is done, at most `within` seconds (tests; shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def close(self, within: float = 5.0) -> None:
        """Let the running tasks finish for `within` seconds, then cancel what is left."""
        await self.idle(within)
        for task in list(self._tasks):
            task.cancel()
