"""Delivery of high-severity safety alerts by e-mail and webhook: queued, sent in the background, retried with backoff.

A lesson only ever enqueues (no wait, no network): a mail server that is down delays the alert, never the lesson.
Each failed attempt is logged and tried again after `retry_secs`, doubling up to `max_retry_secs`, until
`max_attempts`; the alert itself is already in the console (an Alert row) whatever becomes of the e-mail.
What leaves the server is the least that lets staff act: the category, the learner's name, the lesson and a link
to the console, never what was said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

import aiosmtplib
import httpx

from server.settings import AlertSettings

log = logging.getLogger(__name__)

# Deliveries in flight at once: enough that one slow mail server does not hold up the webhook.
MAX_CONCURRENT = 4
# How long shutdown waits for deliveries already under way.
CLOSE_GRACE_SECS = 5.0

CATEGORY_NAMES = {
    "self_harm": "self-harm",
    "abuse": "abuse or bullying",
    "sexual": "sexual content",
    "personal_data": "personal information",
}
ACTION_SENTENCES = {
    "support": "The tutor did not answer it: it said the school's support message instead.",
    "replaced": "It was the tutor's reply: it was cut before it was spoken, and the tutor steered back to the lesson.",
    "none": "",
}


@dataclass(frozen=True)
class AlertNotice:
    """One high-severity flag to tell people about, and the addresses to e-mail it to."""

    flag_id: int
    lesson_id: int
    learner_id: int
    learner_name: str
    role: str  # "user": the learner said it; "assistant": the tutor (the model) wrote it
    category: str
    severity: str
    source: str
    action: str
    created_at: datetime
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class _Job:
    kind: Literal["email", "webhook"]
    notice: AlertNotice
    to: str = ""
    attempt: int = 1

    def describe(self) -> str:
        what = f"e-mail to {self.to}" if self.kind == "email" else "webhook"
        return f"{what} about safety flag {self.notice.flag_id}"


class WebhookRefused(Exception):
    """The webhook answered with a status other than 2xx."""


def category_name(category: str) -> str:
    return CATEGORY_NAMES.get(category, category.replace("_", " "))


def email_message(notice: AlertNotice, *, to: str, sender: str, console_url: str) -> EmailMessage:
    """The alert as an e-mail: what kind of flag, whose lesson, what the tutor did, where to read more."""
    who = (
        f"{notice.learner_name} said something"
        if notice.role == "user"
        else f"the tutor was about to say something to {notice.learner_name}"
    )
    at = notice.created_at.strftime("%Y-%m-%d %H:%M UTC")
    where = f"the tutor at {console_url}" if console_url else "the tutor"
    paragraphs = [
        f"The safety screening of a lesson noticed that {who} that may be {category_name(notice.category)} "
        f"(severity: {notice.severity}), at {at}.",
        ACTION_SENTENCES.get(notice.action, ""),
        f"Please sign in to {where} and open the console's safety alerts to read what was said "
        f"(lesson {notice.lesson_id}) and follow it up.",
        "This e-mail leaves out what was said on purpose: only signed-in staff can read it.",
    ]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"Safety alert: {category_name(notice.category)} in a lesson with {notice.learner_name}"
    message.set_content("\n\n".join(p for p in paragraphs if p) + "\n")
    return message


def webhook_body(notice: AlertNotice, console_url: str) -> dict[str, Any]:
    return {
        "event": "safety.alert",
        "flag": {
            "id": notice.flag_id,
            "lesson_id": notice.lesson_id,
            "role": notice.role,
            "category": notice.category,
            "severity": notice.severity,
            "source": notice.source,
            "action": notice.action,
            "created_at": notice.created_at.isoformat(),
        },
        "learner": {"id": notice.learner_id, "name": notice.learner_name},
        "console_url": console_url or None,
    }


class AlertSender:
    """The background queue of alert deliveries; `enqueue` returns at once, `close` on shutdown."""

    def __init__(self, settings: AlertSettings, console_url: str = "") -> None:
        self._settings = settings
        self._console_url = console_url.rstrip("/")
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.TimerHandle] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._http: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def configured(self) -> bool:
        return bool(self._settings.smtp_host or self._settings.webhook_url)

    def enqueue(self, notice: AlertNotice) -> None:
        """Queue the notice's e-mails (one per address, so no one sees the others') and its webhook call."""
        if self._closed or not self.configured:
            return
        queue = self._start()
        if self._settings.smtp_host:
            addresses = dict.fromkeys([*notice.recipients, *self._settings.extra_recipients])
            for address in addresses:
                queue.put_nowait(_Job("email", notice, to=address))
        if self._settings.webhook_url:
            queue.put_nowait(_Job("webhook", notice))

    def _start(self) -> asyncio.Queue[_Job]:
        # Started by the first alert, in the event loop that raises it (the app's).
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work(), name="safety-alerts")
        return self._queue

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            await self._slots.acquire()
            task = asyncio.create_task(self._attempt(job), name=f"safety-alert-{job.notice.flag_id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slots.release()

    async def _attempt(self, job: _Job) -> None:
        settings = self._settings
        try:
            if job.kind == "email":
                await self._email(job)
            else:
                await self._webhook(job)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, httpx.HTTPError, WebhookRefused) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if job.attempt >= settings.max_attempts:
                log.error(
                    "alerts: %s failed %d times, giving up (%s); the alert stays in the console",
                    job.describe(),
                    job.attempt,
                    reason,
                )
                return
            delay = min(settings.retry_secs * 2 ** (job.attempt - 1), settings.max_retry_secs)
            log.warning(
                "alerts: %s failed (attempt %d of %d: %s); trying again in %.1f s",
                job.describe(),
                job.attempt,
                settings.max_attempts,
                reason,
                delay,
            )
            self._retry_later(replace(job, attempt=job.attempt + 1), delay)
            return
        log.info("alerts: sent %s", job.describe())

    def _retry_later(self, job: _Job, delay: float) -> None:
        if self._closed or self._queue is None:
            return
        queue = self._queue

        def requeue() -> None:
            self._retries.discard(handle)
            if not self._closed:
                queue.put_nowait(job)

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._retries.add(handle)

    async def _email(self, job: _Job) -> None:
        settings = self._settings
        message = email_message(job.notice, to=job.to, sender=settings.mail_from, console_url=self._console_url)
        password = settings.smtp_password.get_secret_value() if settings.smtp_password is not None else None
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password if settings.smtp_username else None,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            timeout=settings.timeout_secs,
        )

    async def _webhook(self, job: _Job) -> None:
        settings = self._settings
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=settings.timeout_secs)
        headers = {}
        if settings.webhook_token is not None:
            headers["Authorization"] = f"Bearer {settings.webhook_token.get_secret_value()}"
        response = await self._http.post(
            settings.webhook_url, json=webhook_body(job.notice, self._console_url), headers=headers
        )
        if not response.is_success:
            raise WebhookRefused(f"HTTP {response.status_code}")

    @property
    def pending(self) -> int:
        """Deliveries queued, waiting for a retry, or under way."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + len(self._retries) + len(self._sending)

    async def close(self) -> None:
        """Stop: deliveries under way get a few seconds; what is still waiting is logged as not sent."""
        if self._closed:
            return
        self._closed = True
        for handle in self._retries:
            handle.cancel()
        left = (self._queue.qsize() if self._queue is not None else 0) + len(self._retries)
        self._retries.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._sending:
            _, late = await asyncio.wait(set(self._sending), timeout=CLOSE_GRACE_SECS)
            for task in late:
                task.cancel()
            left += len(late)
        if left:
            log.warning("alerts: %d alert deliveries were not made before shutdown (the console still has them)", left)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
