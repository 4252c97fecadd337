"""The lesson pipeline's retrieval stage: the teacher's passages for what the learner just said join the context.

It sits between the user aggregator (after the safety stage) and the LLM. On each finished learner turn it asks
the callback it was given for passages (server/materials.py: a full-text query of a few milliseconds, given up
past its budget) and puts them in the context as one system message just before the learner's words, in place
of the previous turn's, so the context grows by one turn's passages at most. The sources of the passages go to
the tutor's next line (`take_sources`), which the session shows and stores with them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.aggregators.llm_context import LLMContext, LLMContextMessage, standard_message_text
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

log = logging.getLogger(__name__)


class Passages(Protocol):
    """What the callback found: the system message the model reads, and how the tutor's line cites it."""

    @property
    def prompt(self) -> str: ...

    @property
    def sources(self) -> Sequence[Mapping[str, Any]]: ...


Retrieve = Callable[[str], Awaitable[Passages | None]]


class AddPassages(FrameProcessor):
    """Adds the passages found for each learner turn to the context before the model reads it."""

    def __init__(self, retrieve: Retrieve | None) -> None:
        super().__init__(name="materials")
        self._retrieve = retrieve
        self._last: Any = None
        self._message: LLMContextMessage | None = None
        self._sources: list[dict[str, Any]] = []

    def take_sources(self) -> list[dict[str, Any]]:
        """The sources of the passages the model was last given, once: for the tutor line that answers with them."""
        sources, self._sources = self._sources, []
        return sources

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if (
            self._retrieve is not None
            and direction == FrameDirection.DOWNSTREAM
            and isinstance(frame, LLMContextFrame)
            and not frame.speculation
        ):
            await self._add(frame.context)
        await self.push_frame(frame, direction)

    async def _add(self, context: LLMContext) -> None:
        messages = context.get_messages()
        last = messages[-1] if messages else None
        if last is self._last or not isinstance(last, dict) or last.get("role") != "user":
            return  # not a new learner turn (a reply the session queued, or the same turn again)
        self._last = last
        said = standard_message_text(last).strip()
        found: Passages | None = None
        if said and self._retrieve is not None:
            try:
                found = await self._retrieve(said)
            except Exception:  # the lesson goes on without passages; the failure is the operator's to see
                log.exception("materials: the search for a learner's turn failed")
        kept = [m for m in messages if m is not self._message]
        self._message = None
        self._sources = []
        if found is not None and found.prompt:
            self._message = cast(LLMContextMessage, {"role": "system", "content": found.prompt})
            kept.insert(len(kept) - 1, self._message)
            self._sources = [dict(s) for s in found.sources]
        if len(kept) != len(messages) or self._message is not None:
            context.set_messages(kept)
