"""The real app served by hypercorn on a loopback port, in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading

from hypercorn.asyncio import serve
from hypercorn.config import Config

from harness.live_server import free_port
from server.app import create_app
from server.settings import Settings


class InProcessServer:
    """`with InProcessServer(settings) as server:` serves at `server.url` until the block ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 1
        app = create_app(self.settings)

        @app.before_serving
        async def _mark_ready() -> None:
            self._ready.set()

        await serve(app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        if not self._ready.wait(120) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        # before_serving runs before the socket accepts; wait until it does.
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            threading.Event().wait(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
