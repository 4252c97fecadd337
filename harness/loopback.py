"""A base for test stand-ins of outside services: an aiohttp app on 127.0.0.1, in its own thread and event loop.

Its own loop lets sync benchmark code and any test event loop use it alike.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from aiohttp import web


class LoopbackServer(ABC):
    """`start()` returns `http://127.0.0.1:PORT/v1`; `stop()` ends it; also a context manager."""

    thread_name = "loopback-server"
    max_body = 1024**2

    def __init__(self) -> None:
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the service's endpoints."""

    async def on_start(self) -> None:  # noqa: B027 - an optional hook
        """Runs in the server's loop before it listens."""

    async def on_stop(self) -> None:  # noqa: B027 - an optional hook
        """Runs in the server's loop before it closes."""

    def start(self) -> str:
        if self._thread is not None:
            return self.base_url
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                port = loop.run_until_complete(self._serve())
                self.base_url = f"http://127.0.0.1:{port}/v1"
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self) -> int:
        await self.on_start()
        app = web.Application(client_max_size=self.max_body)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        await self.on_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
