"""Safety screening of what is said in lessons: the local check, the classifier, flags with their alerts, and who
may read them.

On the audio path only the local check runs (compiled word and pattern lists: microseconds). Everything slower
happens after, in the background: storing the flag, alerting the learner's teachers and the administrators,
and asking the classifier (the configured language model, or a /moderations endpoint) about what the lists let
through. A failure there is logged and costs the lesson nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

import openai
from pydantic import BaseModel

from server import audit
from server.accounts import CurrentUser
from server.alerts import AlertNotice, AlertSender
from server.background import BackgroundTasks
from server.errors import NotFound
from server.pipeline.llm_client import openai_client
from server.settings import SafetyCategory, Settings, Severity
from server.store import safety as store
from server.store.db import Database
from server.timeutil import as_utc

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from server.pipeline.language_model import LanguageModel
    from server.pipeline.screening import Finding, Screening

log = logging.getLogger(__name__)

Action = Literal["replaced", "support", "none"]
Source = Literal["local", "model", "moderation"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
FLAGS_READ = "safety_flags.read"
EXTRAS_KEY = "safety"

# The classifier's instructions: one short line of JSON back, so a small model can do it and parsing is plain.
CLASSIFIER_PROMPT = (
    "You check what is said in a spoken lesson between an AI tutor and a child, for the child's safety. "
    "Categories: self_harm (the speaker may hurt themselves, or urges someone to), abuse (threats, bullying, "
    "someone hurting the child, grooming), sexual (sexual content), personal_data (a phone number, home "
    "address, e-mail or the like is given or asked for). Ordinary lesson content is safe, even about death, "
    "illness, war or the body. Answer with one line of JSON and nothing else: "
    '{"category": "none"} when it is safe, else {"category": "<category>", "severity": "low"|"medium"|"high"}.'
)
CLASSIFIER_MAX_TOKENS = 40
# A learner's turn is classified once the tutor's reply to it is written, or after this long.
REPLY_WAIT_SECS = 15.0
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)
_CATEGORY_NAME = re.compile(r"^[a-z][a-z_]{0,31}$")

# OpenAI's moderation categories, as ours: which category and how bad.
MODERATION_CATEGORIES: dict[str, tuple[str, Severity]] = {
    "self-harm": ("self_harm", "high"),
    "self-harm/intent": ("self_harm", "high"),
    "self-harm/instructions": ("self_harm", "high"),
    "sexual": ("sexual", "high"),
    "sexual/minors": ("sexual", "high"),
    "harassment": ("abuse", "medium"),
    "harassment/threatening": ("abuse", "high"),
    "hate": ("abuse", "medium"),
    "hate/threatening": ("abuse", "high"),
    "violence": ("abuse", "medium"),
    "violence/graphic": ("abuse", "medium"),
    "illicit": ("illicit", "medium"),
    "illicit/violent": ("illicit", "high"),
}


@dataclass(frozen=True)
class Verdict:
    """What an utterance was flagged as, and what the lesson did about it."""

    category: str
    severity: Severity
    action: Action = "none"


# -- the local check ----------------------------------------------------------------------------------------

# Speech-to-text and models write typographic apostrophes and dashes too; the lists are written with plain ones.
_PLAIN = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2014": "-"})


def _phrases(phrases: list[str]) -> str:
    """Listed phrases as one pattern: whole words, any case, a space also matching a hyphen, apostrophes optional.

    One group behind one pair of word-boundary checks: four times faster than a boundary around each phrase.
    """
    alternatives = [
        r"[\s-]+".join(re.escape(word).replace("'", "'?") for word in re.split(r"[\s-]+", phrase.strip()) if word)
        for phrase in phrases
        if phrase.strip()
    ]
    return r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)" if alternatives else ""


class LocalCheck:
    """The configured word and pattern lists, compiled once: per category, its phrases as one expression (matched
    on the lower-cased text, which lets the regex engine skip ahead by literal prefixes) and its patterns as
    another (case-insensitive, on the text as said)."""

    def __init__(self, categories: Mapping[str, SafetyCategory]) -> None:
        checks: list[tuple[str, Severity, re.Pattern[str] | None, re.Pattern[str] | None]] = []
        for name, category in categories.items():
            phrases = _phrases([w.lower() for w in category.words])
            patterns = "|".join(f"(?:{pattern})" for pattern in category.patterns)
            if phrases or patterns:
                checks.append(
                    (
                        name,
                        category.severity,
                        re.compile(phrases) if phrases else None,
                        re.compile(patterns, re.IGNORECASE) if patterns else None,
                    )
                )
        # The most severe first: an utterance that matches two categories is flagged as the worse one.
        self._checks = sorted(checks, key=lambda check: -RANK[check[1]])

    def __call__(self, text: str) -> Verdict | None:
        text = text.translate(_PLAIN)
        lowered = text.lower()
        for name, severity, phrases, patterns in self._checks:
            if (phrases is not None and phrases.search(lowered)) or (patterns is not None and patterns.search(text)):
                return Verdict(name, severity)
        return None


# -- what the console shows ----------------------------------------------------------------------------------


class LearnerRef(BaseModel):
    id: int
    name: str


class FlagOut(BaseModel):
    id: int
    lesson_id: int
    learner: LearnerRef
    companion_name: str | None
    role: str  # "user" (the learner) or "assistant" (the tutor)
    text: str
    category: str
    severity: str
    source: str
    action: str
    created_at: datetime


class FlagList(BaseModel):
    flags: list[FlagOut]


class AlertOut(BaseModel):
    id: int
    read_at: datetime | None
    created_at: datetime
    flag: FlagOut


class AlertList(BaseModel):
    alerts: list[AlertOut]
    unread: int


def _flag_out(record: store.FlagRecord) -> FlagOut:
    return FlagOut(
        id=record.id,
        lesson_id=record.lesson_id,
        learner=LearnerRef(id=record.learner_id, name=record.learner_name),
        companion_name=record.companion_name,
        role=record.role,
        text=record.text,
        category=record.category,
        severity=record.severity,
        source=record.source,
        action=record.action,
        created_at=as_utc(record.created_at),
    )


async def flags_for(
    db: Database, viewer: CurrentUser, *, class_id: int | None, severity: str | None, limit: int
) -> FlagList:
    """The flags a teacher may see (their classes' learners'; an administrator: everyone's), newest first.

    Flags quote what learners said, so each read that shows any is audited like a transcript's. A class that is not the
    teacher's is a 404, as for its other pages, so class ids do not leak.
    """
    async with db.write() as session:
        if class_id is not None:
            owner = await store.class_teacher(session, class_id)
            if owner is None or (not viewer.is_admin and owner != viewer.id):
                raise NotFound("class_not_found", "No class with that id.")
        records = await store.flags(
            session,
            teacher_id=None if viewer.is_admin else viewer.id,
            class_id=class_id,
            severity=severity,
            limit=limit,
        )
        scope = ", ".join(
            part
            for part in (
                f"class {class_id}" if class_id is not None else "",
                f"severity {severity}" if severity else "",
            )
            if part
        )
        # Only reads that showed someone's words: an empty list quotes nobody, and would only bury the log.
        if records:
            audit.record(session, viewer, FLAGS_READ, detail=f"{len(records)} flags" + (f" ({scope})" if scope else ""))
    return FlagList(flags=[_flag_out(r) for r in records])


async def alerts_for(db: Database, viewer: CurrentUser, *, limit: int) -> AlertList:
    async with db.read() as session:
        records = await store.alerts_of(session, viewer.id, limit)
        unread = await store.unread_count(session, viewer.id)
    alerts = [
        AlertOut(
            id=r.id,
            read_at=as_utc(r.read_at) if r.read_at is not None else None,
            created_at=as_utc(r.created_at),
            flag=_flag_out(r.flag),
        )
        for r in records
    ]
    return AlertList(alerts=alerts, unread=unread)


async def mark_read(db: Database, viewer: CurrentUser, alert_id: int) -> None:
    async with db.write() as session:
        if not await store.mark_read(session, alert_id, viewer.id, datetime.now(UTC)):
            raise NotFound("alert_not_found", "No alert with that id.")


# -- screening lessons ---------------------------------------------------------------------------------------


class Safety:
    """The app's screening: every lesson's checks and what follows a flag. Cheap to build; `close` on shutdown."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        language_model: Callable[[], LanguageModel | None] = lambda: None,
    ) -> None:
        """`language_model()`: the voice service's language model (or None), the classifier when it is enabled."""
        self._settings = settings.safety
        self._db = db
        self._language_model = language_model
        self.check = LocalCheck(settings.safety.categories)
        self.alerts = AlertSender(settings.alerts, settings.server.public_url)
        self._moderation: AsyncOpenAI | None = None
        self._tasks = BackgroundTasks(log, "safety: storing a screening result failed")
        self._classifier_skipped: str | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    # What the pipeline runs, on the audio path.

    def learner_turn(self, text: str) -> Verdict | None:
        """A learner's finished turn: a high flag is answered with the support message, any other only noted."""
        verdict = self.check(text)
        if verdict is None:
            return None
        return Verdict(verdict.category, verdict.severity, "support" if verdict.severity == "high" else "none")

    def tutor_reply(self, text: str) -> Verdict | None:
        """A tutor reply so far: anything the lists flag is not said."""
        verdict = self.check(text)
        return None if verdict is None else Verdict(verdict.category, verdict.severity, "replaced")

    def screening(self, lesson_id: int) -> Screening | None:
        """The callbacks one lesson's pipeline screens with (None when screening is off)."""
        if not self.enabled:
            return None
        # Here, not at the top: the pipeline (pipecat) loads only where lessons run.
        from server.pipeline.screening import Screening

        # Set when the tutor's reply to the learner's last turn has been written: the classifier asks the same
        # model, and must not queue ahead of that reply on a server that answers one request at a time.
        replied = asyncio.Event()

        def report(role: str, text: str, finding: Finding | None) -> None:
            if role == "assistant":
                replied.set()
                after = None
            else:
                replied.clear()
                after = replied if finding is None else None
            self._tasks.start(self.screened(lesson_id, role, text, finding, after=after), f"safety-lesson-{lesson_id}")

        return Screening(learner=self.learner_turn, tutor=self.tutor_reply, report=report)

    def hosted_utterance(self, lesson_id: int, role: str, text: str) -> None:
        """A hosted (Vapi) lesson's utterance, stored from its webhook: screened and flagged in the background.

        Vapi speaks the reply before its webhook reaches us, so nothing can be replaced here; the flag, the
        alert and the classifier are the same as for local lessons.
        """
        if not self.enabled:
            return
        # Only noted (action "none"): the hosted assistant has already answered.
        self._tasks.start(self.screened(lesson_id, role, text, self.check(text)), f"safety-hosted-{lesson_id}")

    # What follows, off the audio path.

    async def screened(
        self, lesson_id: int, role: str, text: str, finding: Finding | None, *, after: asyncio.Event | None = None
    ) -> None:
        """Store the local check's flag, or else ask the classifier (once `after` is set, or REPLY_WAIT_SECS
        passed) and store its flag if it has one."""
        if finding is not None:
            verdict = Verdict(finding.category, _severity(finding.severity), _action(finding.action))
            await self.record(lesson_id, role, text, verdict, "local")
            return
        if after is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(after.wait(), REPLY_WAIT_SECS)
        classified = await self.classify(role, text)
        if classified is not None:
            await self.record(lesson_id, role, text, *classified)

    async def record(self, lesson_id: int, role: str, text: str, verdict: Verdict, source: Source) -> int | None:
        """Store a flag on the lesson; a high one gets an alert for each of the learner's teachers and each
        administrator, in the same transaction, and then goes out by e-mail and webhook. Returns the flag's id
        (None if the lesson is gone)."""
        async with self._db.write() as session:
            lesson = await store.lesson_learner(session, lesson_id)
            if lesson is None:
                return None
            flag = await store.add_flag(
                session,
                lesson_id=lesson_id,
                learner_id=lesson.learner_id,
                role=role,
                text=text,
                category=verdict.category,
                severity=verdict.severity,
                source=source,
                action=verdict.action,
            )
            recipients = await store.alert_recipients(session, lesson.learner_id) if verdict.severity == "high" else []
            store.add_alerts(session, flag.id, [r.id for r in recipients])
            flag_id, created_at = flag.id, as_utc(flag.created_at)
        # What was said stays out of the log: it is personal data, and only the console shows it.
        log.info(
            "safety: lesson %s: %s flag %s (%s, %s, %s, action %s), %d alerted",
            lesson_id,
            "learner" if role == "user" else "tutor",
            flag_id,
            verdict.category,
            verdict.severity,
            source,
            verdict.action,
            len(recipients),
        )
        if recipients:
            self.alerts.enqueue(
                AlertNotice(
                    flag_id=flag_id,
                    lesson_id=lesson_id,
                    learner_id=lesson.learner_id,
                    learner_name=lesson.learner_name,
                    role=role,
                    category=verdict.category,
                    severity=verdict.severity,
                    source=source,
                    action=verdict.action,
                    created_at=created_at,
                    recipients=tuple(r.email for r in recipients),
                )
            )
        return flag_id

    async def classify(self, role: str, text: str) -> tuple[Verdict, Source] | None:
        """The classifier's verdict on an utterance the lists let through: the moderation endpoint when one is
        configured, else the language model when enabled and reachable; None when safe, off or failing."""
        settings = self._settings
        if settings.moderation_url:
            moderated = await self._moderate(text)
            return None if moderated is None else (moderated, "moderation")
        if settings.classifier == "off":
            return None
        judged = await self._ask_model(role, text)
        return None if judged is None else (judged, "model")

    async def _ask_model(self, role: str, text: str) -> Verdict | None:
        model = self._language_model()
        status = model.status if model is not None else None
        if model is None or status is None or not status.available or status.provider != "openai":
            reason = "no language model answers" if status is None or not status.available else "it is embedded"
            if self._classifier_skipped != reason:
                self._classifier_skipped = reason
                log.info("safety: the model classifier is off for now (%s); the local lists still screen", reason)
            return None
        self._classifier_skipped = None
        speaker = "The child" if role == "user" else "The tutor"
        client = model.client.with_options(timeout=self._settings.classifier_timeout_secs, max_retries=0)
        try:
            response = await client.chat.completions.create(
                model=model.model_name,
                messages=[
                    {"role": "system", "content": CLASSIFIER_PROMPT},
                    {"role": "user", "content": f"{speaker} said: {text}"},
                ],
                temperature=0,
                max_tokens=CLASSIFIER_MAX_TOKENS,
            )
        except openai.APIError as exc:
            log.warning("safety: the model classifier failed (%s: %s)", type(exc).__name__, exc)
            return None
        answer = response.choices[0].message.content if response.choices else None
        return self.parse_classification(answer or "")

    def parse_classification(self, answer: str) -> Verdict | None:
        """The model's one line of JSON as a verdict; anything else is taken as no verdict (and logged)."""
        found = _JSON_OBJECT.search(answer)
        try:
            data = json.loads(found.group(0)) if found else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            log.debug("safety: the classifier's answer is not JSON: %.80r", answer)
            return None
        category = str(data.get("category", "")).strip().lower().replace("-", "_").replace(" ", "_")
        if category in ("", "none", "safe", "null"):
            return None
        if not _CATEGORY_NAME.match(category):
            category = "other"
        severity = str(data.get("severity", "")).strip().lower()
        if severity not in RANK:
            configured = self._settings.categories.get(category)
            severity = configured.severity if configured is not None else "medium"
        return Verdict(category, _severity(severity))

    async def _moderate(self, text: str) -> Verdict | None:
        settings = self._settings
        if self._moderation is None:
            self._moderation = openai_client(
                settings.moderation_url, settings.moderation_api_key, settings.classifier_timeout_secs, 0
            )
        try:
            raw = await self._moderation.moderations.with_raw_response.create(
                model=settings.moderation_model, input=text
            )
            data: Any = raw.http_response.json()
        except (openai.APIError, ValueError) as exc:
            log.warning("safety: the moderation endpoint failed (%s: %s)", type(exc).__name__, exc)
            return None
        results = data.get("results") if isinstance(data, dict) else None
        result = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else {}
        if not result.get("flagged"):
            return None
        flagged = [name for name, on in (result.get("categories") or {}).items() if on]
        verdicts = [MODERATION_CATEGORIES.get(name, ("other", "medium")) for name in flagged] or [("other", "medium")]
        category, severity = max(verdicts, key=lambda v: RANK[v[1]])
        return Verdict(category, severity)

    # Lifecycle.

    async def idle(self, within: float = 10.0) -> None:
        """Wait until every background task so far is done (tests; shutdown)."""
        await self._tasks.idle(within)

    async def close(self) -> None:
        """Store what is still being stored (a few seconds at most), then stop the alerts and the clients."""
        await self._tasks.close(within=5.0)
        await self.alerts.close()
        if self._moderation is not None:
            await self._moderation.close()
            self._moderation = None


def _severity(value: str) -> Severity:
    return value if value in RANK else "medium"  # type: ignore[return-value]


def _action(value: str) -> Action:
    return value if value in ("replaced", "support", "none") else "none"  # type: ignore[return-value]
