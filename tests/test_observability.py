"""Errors reach Sentry when SENTRY_DSN is set, and the learner still gets a JSON error, not a traceback."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from server.app import create_app
from server.observability import JsonFormatter, init_sentry
from tests.conftest import make_settings


@pytest.fixture
def sentry_inbox() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback stand-in for Sentry's ingest endpoint that keeps every envelope it is sent."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public@127.0.0.1:{server.server_port}/1", received
    server.shutdown()


async def test_unhandled_error_is_reported_to_sentry_and_shaped_as_json(tmp_path, monkeypatch, sentry_inbox):
    dsn, received = sentry_inbox
    monkeypatch.setenv("SENTRY_DSN", dsn)
    assert init_sentry() is True
    try:
        app = create_app(make_settings(tmp_path))

        @app.get("/boom")
        async def boom() -> str:
            raise RuntimeError("the tutor tripped")

        app.testing = False  # answer as in production instead of re-raising into the test
        async with app.test_app():
            response = await app.test_client().get("/boom")
        assert response.status_code == 500
        assert (await response.get_json())["error"]["code"] == "internal_error"
        assert "tripped" not in await response.get_data(as_text=True)
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.init(dsn=None)
    assert any(b"the tutor tripped" in envelope and b"RuntimeError" in envelope for envelope in received)


def test_without_dsn_sentry_stays_off(monkeypatch):
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert init_sentry() is False


def test_logs_are_one_json_object_per_line():
    import logging

    record = logging.LogRecord("server.lesson", logging.INFO, __file__, 1, "lesson %s ended", (7,), None)
    record.lesson_id = 7
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "lesson 7 ended" and entry["lesson_id"] == 7 and entry["level"] == "info"
