"""Structured logs always, Sentry error reports when SENTRY_DSN is set, and the server's runtime gauges."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Metric


class JsonFormatter(logging.Formatter):
    """One JSON object a line, so log collectors can parse lessons' and requests' events."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("lesson_id", "user_id", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pipecat logs through loguru, at DEBUG to stderr unless told otherwise: route it into the same JSON
    # lines at our level (DEBUG logging of every frame costs real CPU in live lessons).
    from loguru import logger

    logger.remove()
    logger.add(_LoguruToLogging(), level=level.upper(), format="{message}")


class _LoguruToLogging:
    """A loguru sink that hands each message to the standard logger named after its module."""

    def write(self, message: Any) -> None:
        record = message.record
        exc = record["exception"]
        exc_info = (exc.type, exc.value, exc.traceback) if exc is not None and exc.type is not None else None
        logging.getLogger(record["name"] or "pipecat").log(record["level"].no, record["message"], exc_info=exc_info)


def init_sentry() -> bool:
    """Send errors to Sentry when SENTRY_DSN is set (read at start, never at import)."""
    dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.quart import QuartIntegration

    sentry_sdk.init(dsn=dsn, integrations=[QuartIntegration()], traces_sample_rate=0.0, send_default_pii=False)
    return True


class RuntimeCollector:
    """Prometheus gauges of what a long-running server holds: asyncio tasks, OS threads and live lessons.

    A lesson that leaves a task, a thread or a session behind shows here as a figure that only ever rises,
    which is how a school day of lessons is told apart from a leak (see bench/soak.py).
    """

    def __init__(self, live_lessons: Callable[[], int]) -> None:
        self._live_lessons = live_lessons

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            # Scrapes are answered on the event loop, whose tasks these are.
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside the event loop (a test, a script): nothing to count
            tasks = None
        if tasks is not None:
            yield GaugeMetricFamily("tutor_asyncio_tasks", "asyncio tasks alive on the server's event loop", tasks)
        yield GaugeMetricFamily("tutor_process_threads", "OS threads of the server process", process_threads())
        yield GaugeMetricFamily("tutor_live_lessons", "voice lessons whose pipeline is running", self._live_lessons())


def process_threads() -> int:
    """OS threads of this process, native ones (onnxruntime's, CTranslate2's) included where /proc says."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux: the threads Python knows of
        return threading.active_count()
