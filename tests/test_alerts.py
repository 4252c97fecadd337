"""Alert delivery: real e-mail to an SMTP server on loopback, JSON to a webhook, and retries when either is down."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from harness.loopback import LoopbackServer
from server.alerts import AlertNotice, AlertSender
from server.settings import AlertSettings

NOTICE = AlertNotice(
    flag_id=7,
    lesson_id=42,
    learner_id=3,
    learner_name="Ann Learner",
    role="user",
    category="self_harm",
    severity="high",
    source="local",
    action="support",
    created_at=datetime(2026, 12, 2, 9, 30, tzinfo=UTC),
    recipients=("tess@school.test", "ada@school.test"),
)
# What the learner said, and their address: neither may leave the server in an alert.
SAID = "I want to kill myself"
LEARNER_EMAIL = "ann@school.test"


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Return once `condition()` holds, or after `within` seconds (the caller's assertions then say what is wrong)."""
    deadline = time.monotonic() + within
    while True:
        if condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler that keeps each message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append((envelope, message))
        return "250 OK"

    async def wait_for(self, count: int, within: float = 10.0) -> list[tuple[Envelope, EmailMessage]]:
        await eventually(lambda: len(self.messages) >= count, within)
        return list(self.messages)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class WebhookReceiver(LoopbackServer):
    """A loopback HTTP endpoint that keeps each JSON body posted to it, answering `status`."""

    thread_name = "webhook"

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/safety", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.received.append(body)
            self.headers.append(dict(request.headers))
        return web.json_response({"ok": self.status < 300}, status=self.status)

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/hooks/safety"

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.received) >= count, within)
        return list(self.received)


def alert_settings(**values: Any) -> AlertSettings:
    return AlertSettings.model_validate({"smtp_security": "none", "retry_secs": 0.05, "timeout_secs": 2, **values})


async def test_each_recipient_gets_an_email_with_the_category_and_the_learners_name_only(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    sender = AlertSender(
        alert_settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            mail_from="tutor@school.test",
            extra_recipients=["safeguarding@school.test", "ada@school.test"],
        ),
        console_url="https://tutor.school.test/",
    )
    try:
        sender.enqueue(NOTICE)
        received = await inbox.wait_for(3)
    finally:
        await sender.close()

    # One message each, so no one sees who else was told; an address listed twice gets one.
    assert sorted(envelope.rcpt_tos[0] for envelope, _ in received) == [
        "ada@school.test",
        "safeguarding@school.test",
        "tess@school.test",
    ]
    assert all(len(envelope.rcpt_tos) == 1 for envelope, _ in received)
    envelope, message = received[0]
    assert envelope.mail_from == "tutor@school.test"
    assert message["Subject"] == "Safety alert: self-harm in a lesson with Ann Learner"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Ann Learner said something that may be self-harm (severity: high), at 2026-12-02 09:30 UTC." in text
    assert "support message" in text
    assert "https://tutor.school.test" in text and "lesson 42" in text
    everything = message.as_string()
    assert SAID not in everything and "kill" not in everything.lower()
    assert LEARNER_EMAIL not in everything


async def test_the_webhook_gets_json_with_the_flag_and_the_bearer_token() -> None:
    with WebhookReceiver() as hook:
        sender = AlertSender(alert_settings(webhook_url=hook.url, webhook_token="hook-secret"))
        try:
            sender.enqueue(NOTICE)
            received = await hook.wait_for(1)
        finally:
            await sender.close()
    assert received == [
        {
            "event": "safety.alert",
            "flag": {
                "id": 7,
                "lesson_id": 42,
                "role": "user",
                "category": "self_harm",
                "severity": "high",
                "source": "local",
                "action": "support",
                "created_at": "2026-12-02T09:30:00+00:00",
            },
            "learner": {"id": 3, "name": "Ann Learner"},
            "console_url": None,
        }
    ]
    assert hook.headers[0]["Authorization"] == "Bearer hook-secret"


async def test_a_mail_server_that_is_down_delays_the_alert_and_never_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there yet
    sender = AlertSender(
        alert_settings(smtp_host="127.0.0.1", smtp_port=port, retry_secs=0.2, max_retry_secs=0.4, max_attempts=20)
    )
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    try:
        with caplog.at_level(logging.WARNING, logger="server.alerts"):
            started = time.perf_counter()
            sender.enqueue(NOTICE)
            enqueued_in = time.perf_counter() - started
            await eventually(lambda: any("attempt 2 of 20" in r.getMessage() for r in caplog.records))
            # The mail server comes back: the next retry delivers.
            controller.start()
            received = await inbox.wait_for(2)
    finally:
        await sender.close()
        controller.stop()
    assert enqueued_in < 0.005, f"enqueue took {enqueued_in * 1000:.1f} ms"
    assert sorted(envelope.rcpt_tos[0] for envelope, _ in received) == ["ada@school.test", "tess@school.test"]
    # Each address is tried on its own and in parallel, so their first failures are logged in either order.
    failures = {
        address: [
            r
            for r in caplog.records
            if f"e-mail to {address} about safety flag 7 failed (attempt 1 of 20" in r.getMessage()
        ]
        for address in ("tess@school.test", "ada@school.test")
    }
    for address, records in failures.items():
        assert len(records) == 1, f"{address}: {[r.getMessage() for r in records]}"
        assert records[0].levelno == logging.WARNING
        assert "trying again in 0.2 s" in records[0].getMessage()


async def test_a_delivery_that_keeps_failing_is_given_up_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with WebhookReceiver(status=503) as hook:
        sender = AlertSender(alert_settings(webhook_url=hook.url, retry_secs=0.01, max_attempts=3))
        try:
            with caplog.at_level(logging.WARNING, logger="server.alerts"):
                sender.enqueue(NOTICE)
                await hook.wait_for(3)
                await eventually(lambda: sender.pending == 0, within=5)
        finally:
            await sender.close()
    assert len(hook.received) == 3
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert "webhook about safety flag 7 failed (attempt 1 of 3: WebhookRefused: HTTP 503)" in messages[0][1]
    assert messages[2][1] == (
        "alerts: webhook about safety flag 7 failed 3 times, giving up (WebhookRefused: HTTP 503); "
        "the alert stays in the console"
    )


async def test_nothing_is_sent_when_nothing_is_configured() -> None:
    sender = AlertSender(AlertSettings())
    assert not sender.configured
    sender.enqueue(NOTICE)
    assert sender.pending == 0
    await sender.close()


async def test_shutdown_drops_waiting_retries_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sender = AlertSender(alert_settings(smtp_host="127.0.0.1", smtp_port=free_port(), retry_secs=60))
    with caplog.at_level(logging.WARNING, logger="server.alerts"):
        sender.enqueue(NOTICE)
        await eventually(lambda: sum("trying again" in r.getMessage() for r in caplog.records) >= 2, within=5)
        started = time.perf_counter()
        await sender.close()
    assert time.perf_counter() - started < 1.0  # a retry a minute away does not hold up shutdown
    assert caplog.records[-1].getMessage() == (
        "alerts: 2 alert deliveries were not made before shutdown (the console still has them)"
    )
