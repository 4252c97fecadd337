"""The pipeline's screening stages on their own: what they let through, what they replace, and that the tutor's words
reach the voice at the very moments they would without screening."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    AggregatedTextFrame,
    DataFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test
from pipecat.utils.text.base_text_aggregator import TextType

from server.pipeline.phrases import sentences
from server.pipeline.screening import Screening, ScreenLearnerTurns, ScreenTutorReplies
from server.pipeline.tts import QuickFirstWords
from server.safety import Safety
from server.settings import Settings

REDIRECT = "Let's get back to our lesson on Neural networks."
SUPPORT = Settings().safety.support_message


@dataclass
class Reports:
    items: list[tuple[str, str, Any]] = field(default_factory=list)
    checked: list[float] = field(default_factory=list)

    def screening(self) -> Screening:
        domain = Safety(Settings(), db=None)  # type: ignore[arg-type]

        def timed(check: Any) -> Any:
            def run(text: str) -> Any:
                started = time.perf_counter()
                try:
                    return check(text)
                finally:
                    self.checked.append(time.perf_counter() - started)

            return run

        return Screening(
            learner=timed(domain.learner_turn),
            tutor=timed(domain.tutor_reply),
            report=lambda role, text, finding: self.items.append((role, text, finding)),
        )


@dataclass
class Marker(DataFrame):
    """Sent after each token: which token a piece of text came out after."""

    index: int = 0


def tokens(text: str) -> list[str]:
    """Word-sized deltas, as the scripted LLM streams them."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def streamed(text: str) -> list[Frame]:
    frames: list[Frame] = [LLMFullResponseStartFrame()]
    for i, token in enumerate(tokens(text)):
        frames += [LLMTextFrame(token), Marker(index=i)]
    frames.append(LLMFullResponseEndFrame())
    return frames


def pieces_by_token(frames: list[Frame]) -> list[tuple[str, int]]:
    """Each piece of text handed to the voice, with the number of the token it came out before the marker of."""
    out, pending = [], []
    for frame in frames:
        if isinstance(frame, AggregatedTextFrame):
            pending.append(frame.text)
        elif isinstance(frame, Marker):
            out += [(text, frame.index) for text in pending]
            pending = []
        elif isinstance(frame, LLMFullResponseEndFrame):
            out += [(text, -1) for text in pending]
            pending = []
    return out


async def voice_pieces(text: str) -> list[tuple[str, int]]:
    """What the voice's own aggregator makes of the stream, token by token (no screening anywhere)."""
    aggregator = QuickFirstWords(aggregation_type=TextType.SENTENCE)
    out = []
    for i, token in enumerate(tokens(text)):
        out += [(piece.text, i) async for piece in aggregator.aggregate(token)]
    rest = await aggregator.flush()
    if rest is not None and rest.text.strip():
        out.append((rest.text, -1))
    return out


async def screened(text: str, reports: Reports) -> list[Frame]:
    stage = ScreenTutorReplies(reports.screening(), REDIRECT, QuickFirstWords(aggregation_type=TextType.SENTENCE))
    down, _ = await run_test(stage, frames_to_send=streamed(text))
    return list(down)


CLEAN = (
    "A neural network is a set of simple units that pass numbers along, and each one adds up what it gets. "
    "Training nudges the numbers, bit by bit, until the answers come out right. Shall we try one together?"
)


async def test_a_clean_reply_reaches_the_voice_in_the_same_pieces_at_the_same_tokens() -> None:
    reports = Reports()
    frames = await screened(CLEAN, reports)
    got = pieces_by_token(frames)
    expected = await voice_pieces(CLEAN)
    assert got == expected
    # The voice's quick first words (mid-sentence), then sentences: the test shows more than sentence ends.
    assert len(expected) >= 3 and not expected[0][0].endswith(".")
    assert not any(isinstance(f, LLMTextFrame) for f in frames)
    assert reports.items == [("assistant", CLEAN, None)]
    per_check = max(reports.checked)
    print(f"\nscreening a reply: {len(reports.checked)} checks, the slowest {per_check * 1e6:.0f} µs")
    assert per_check < 1e-3  # against a 20 ms audio packet: nothing a learner could hear


async def test_a_flagged_reply_is_cut_and_the_redirect_said_instead() -> None:
    reports = Reports()
    reply = "Neural networks learn from examples. You are stupid and nobody likes you. Anyway, the weights change."
    frames = await screened(reply, reports)
    said = [f.text for f in frames if isinstance(f, AggregatedTextFrame)]
    assert said == ["Neural networks learn from examples.", *sentences(REDIRECT)]
    assert not any("stupid" in getattr(f, "text", "") for f in frames)
    # The model's reply as written goes to the record, with what was done about it.
    [(role, text, finding)] = reports.items
    assert (role, text) == ("assistant", reply)
    assert (finding.category, finding.severity, finding.action) == ("abuse", "high", "replaced")
    assert isinstance(frames[-1], LLMFullResponseEndFrame)


async def test_a_reply_flagged_in_its_first_words_says_only_the_redirect() -> None:
    reports = Reports()
    frames = await screened("Where do you live, and what is your phone number?", reports)
    said = [f.text for f in frames if isinstance(f, AggregatedTextFrame)]
    assert said == sentences(REDIRECT)
    assert reports.items[0][2].category == "personal_data"


def context_with(text: str) -> LLMContextFrame:
    return LLMContextFrame(context=LLMContext(messages=[{"role": "user", "content": text}]))


async def test_a_learner_turn_flagged_high_gets_the_support_message_instead_of_the_model() -> None:
    reports = Reports()
    stage = ScreenLearnerTurns(reports.screening(), SUPPORT)
    down, _ = await run_test(stage, frames_to_send=[context_with("I want to kill myself.")])
    assert not any(isinstance(f, LLMContextFrame) for f in down)
    # A reply of its own, one sentence a frame (each cached as a fixed phrase's audio).
    assert [type(f) for f in down] == [LLMFullResponseStartFrame, *[TTSSpeakFrame] * 3, LLMFullResponseEndFrame]
    assert [f.text for f in down if isinstance(f, TTSSpeakFrame)] == sentences(SUPPORT)
    [(role, text, finding)] = reports.items
    assert (role, text, finding.category, finding.action) == ("user", "I want to kill myself.", "self_harm", "support")


async def test_other_learner_turns_go_to_the_model_and_are_reported() -> None:
    reports = Reports()
    stage = ScreenLearnerTurns(reports.screening(), SUPPORT)
    frames = [context_with("How do volcanoes form?"), context_with("My phone number is 555 123 4567.")]
    down, _ = await run_test(stage, frames_to_send=frames)
    assert [type(f) for f in down] == [LLMContextFrame, LLMContextFrame]
    assert [(r, t, f and (f.category, f.action)) for r, t, f in reports.items] == [
        ("user", "How do volcanoes form?", None),
        ("user", "My phone number is 555 123 4567.", ("personal_data", "none")),
    ]


async def test_without_screening_both_stages_pass_everything_on() -> None:
    learner = ScreenLearnerTurns(None, SUPPORT)
    down, _ = await run_test(learner, frames_to_send=[context_with("I want to kill myself.")])
    assert [type(f) for f in down] == [LLMContextFrame]
    tutor = ScreenTutorReplies(None, REDIRECT, QuickFirstWords(aggregation_type=TextType.SENTENCE))
    down, _ = await run_test(tutor, frames_to_send=streamed("You are stupid."))
    assert "".join(f.text for f in down if isinstance(f, LLMTextFrame)) == "You are stupid."
