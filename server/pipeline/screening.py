"""The lesson pipeline's safety stages: the learner's turn before the model, the tutor's words before the voice.

Both run the local check they are given (microseconds) and act on its finding; what a finding means, and what
becomes of it (a stored flag, alerts, the slower classifier), is decided outside the pipeline (server/safety.py).
The tutor's words are cut into the same pieces the voice would cut them into, and each piece is checked as it
is handed on, so the screening never holds a word back longer than the voice itself would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipecat.frames.frames import (
    AggregatedTextFrame,
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.text.base_text_aggregator import BaseTextAggregator, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from server.pipeline.phrases import phrase_frames, sentences


class Finding(Protocol):
    """What the local check found, and what the lesson does about it."""

    @property
    def category(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def action(self) -> str: ...  # "support", "replaced" or "none"

    # A "replaced" finding may carry `say`, its own words instead of the redirect (server/pipeline/socratic.py).


@dataclass(frozen=True)
class Screening:
    """How one lesson screens what is said; every call here returns at once."""

    # The learner's finished turn: a finding whose action is "support" answers it with the support message.
    learner: Callable[[str], Finding | None]
    # The tutor's reply written so far: a finding whose action is "replaced" cuts it for the redirect.
    tutor: Callable[[str], Finding | None]
    # (role, text, finding or None) for every learner turn and every reply the model wrote, flagged or not.
    report: Callable[[str, str, Finding | None], None]


@dataclass(frozen=True)
class _Noted:
    """A finding the lesson did not act on (nothing was replaced or said for it): reported with action "none"."""

    category: str
    severity: str
    action: str = "none"


def _noted(finding: Finding) -> Finding:
    return _Noted(finding.category, finding.severity)


def aggregator_like(tts: FrameProcessor) -> BaseTextAggregator:
    """A fresh text aggregator of the kind the TTS stage uses (pipecat keeps its own in a private attribute)."""
    own = getattr(tts, "_text_aggregator", None)
    if isinstance(own, BaseTextAggregator):
        return type(own)(aggregation_type=own.aggregation_type, language=own.language)
    return SimpleTextAggregator(aggregation_type=TextType.SENTENCE)


class ScreenLearnerTurns(FrameProcessor):
    """Sits between the user aggregator and the LLM: a learner's turn flagged for support is not sent to the model;
    the tutor says the support message instead (as a reply of its own, so it is spoken, shown and stored)."""

    def __init__(self, screening: Screening | None, support: str) -> None:
        super().__init__(name="screen-learner")
        self._screening = screening
        self._support = support
        self._last: Any = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        screening = self._screening
        # Speculative inference (a turn not yet over) is not used by this pipeline's turn strategies.
        if (
            screening is None
            or direction != FrameDirection.DOWNSTREAM
            or not isinstance(frame, LLMContextFrame)
            or frame.speculation
        ):
            await self.push_frame(frame, direction)
            return
        messages = frame.context.get_messages()
        last = messages[-1] if messages else None
        text = _user_text(last) if last is not self._last else ""
        self._last = last
        if not text:
            await self.push_frame(frame, direction)
            return
        finding = screening.learner(text)
        if finding is not None and finding.action == "support" and self._support:
            screening.report("user", text, finding)
            for reply in phrase_frames(self._support):
                await self.push_frame(reply, direction)
            return
        screening.report("user", text, None if finding is None else _noted(finding))
        await self.push_frame(frame, direction)


def _user_text(message: Any) -> str:
    if not isinstance(message, dict) or message.get("role") != "user":
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return " ".join(p for p in parts if p).strip()
    return ""


class ScreenTutorReplies(FrameProcessor):
    """Sits between the LLM and the TTS: the model's streamed words reach the voice in the pieces the voice's own
    aggregator would make (so at the same moments), each piece only after the reply so far passed the local check.

    A reply the check flags is cut there: what was already handed on is said, then the redirect, and the rest of
    the model's reply is dropped. The assistant aggregator (after the voice) stores and shows what was said; the
    model's whole reply, as written, goes to `report`.
    """

    def __init__(self, screening: Screening | None, redirect: str, aggregator: BaseTextAggregator) -> None:
        """`aggregator`: a fresh one of the kind the TTS stage uses (aggregator_like), so the pieces are its."""
        super().__init__(name="screen-tutor")
        self._screening = screening
        self._redirect = redirect
        self._aggregator = aggregator
        self._written = ""
        self._finding: Finding | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if self._screening is None or direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame) and not frame.skip_tts:
            await self._text(frame.text)
        elif isinstance(frame, LLMFullResponseStartFrame):
            await self._reset()
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMFullResponseEndFrame):
            if self._finding is None:
                rest = await self._aggregator.flush()
                if rest is not None and rest.text.strip():
                    await self._hand_on(rest.text, rest.type)
            self._finish()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            self._finish()
            await self._aggregator.handle_interruption()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _text(self, text: str) -> None:
        self._written += text
        if self._finding is not None:
            return  # cut: the rest of the reply is only kept for the report
        async for piece in self._aggregator.aggregate(text):
            await self._hand_on(piece.text, piece.type)
            if self._finding is not None:
                return

    async def _hand_on(self, text: str, kind: TextType | str) -> None:
        """Check the reply so far (the piece the voice would say now and whatever was written after it), then hand
        the piece to the voice, or cut the reply there and say the redirect instead."""
        assert self._screening is not None
        finding = self._screening.tutor(self._written)
        instead = (getattr(finding, "say", "") or self._redirect) if finding is not None else ""
        if finding is not None and finding.action == "replaced" and instead:
            self._finding = finding
            await self._aggregator.reset()
            for sentence in sentences(instead):
                await self.push_frame(AggregatedTextFrame(sentence, TextType.SENTENCE))
            return
        await self.push_frame(AggregatedTextFrame(text, kind))

    async def _reset(self) -> None:
        self._written = ""
        self._finding = None
        await self._aggregator.reset()

    def _finish(self) -> None:
        """The reply ended (or was interrupted): report it once, as the model wrote it."""
        written, finding = self._written.strip(), self._finding
        self._written, self._finding = "", None
        if written and self._screening is not None:
            if finding is None:
                # Not cut, yet flagged: said in full (a finding that is not "replaced"), or the learner
                # interrupted before the flagged words reached the voice.
                found = self._screening.tutor(written)
                finding = None if found is None else _noted(found)
            self._screening.report("assistant", written, finding)
