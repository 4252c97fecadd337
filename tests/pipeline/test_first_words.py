"""A reply's first clause goes to the voice before the model finishes its first sentence, and nothing is lost."""

from __future__ import annotations

import pytest

from server.pipeline.tts import QuickFirstWords, first_words
from server.pipeline.webrtc.patches import PRIVATE_MEMBERS


@pytest.mark.parametrize(
    ("buffer", "head"),
    [
        ("A neuron is a brain cell, which", "A neuron is a brain cell,"),
        ("Hello, let me explain how it works, and", "Hello, let me explain how it works,"),
        ("A neuron is a special kind of cell that carries", "A neuron is a special kind of cell"),
        ("Hello, let", None),  # too short a clause to sound natural alone
        ("A neuron is a cell. It", None),  # a whole sentence is ready: the sentence aggregator sends it
        ("A neuron is a special kind of ce", None),
    ],
)
def test_the_first_words_that_can_be_spoken_now(buffer: str, head: str | None) -> None:
    assert first_words(buffer) == head


async def test_a_streamed_reply_is_spoken_from_its_first_clause_and_whole() -> None:
    aggregator = QuickFirstWords(aggregation_type="sentence")
    reply = "A neuron is a brain cell, which sends signals to other cells. It uses electricity and chemicals."
    tokens = [reply[i : i + 3] for i in range(0, len(reply), 3)]
    spoken: list[tuple[int, str]] = []
    for n, token in enumerate(tokens):
        spoken += [(n, a.text) async for a in aggregator.aggregate(token)]
    rest = await aggregator.flush()
    if rest is not None and rest.text:
        spoken.append((len(tokens), rest.text))
    texts = [t for _, t in spoken]
    assert texts[0] == "A neuron is a brain cell,"
    # The first words went out long before the first sentence was complete.
    first_sentence_done = next(n for n in range(len(tokens)) if "cells." in "".join(tokens[: n + 1]))
    assert spoken[0][0] < first_sentence_done - 5
    assert " ".join(texts).split() == reply.split()

    # The next reply starts afresh.
    again = [a.text async for a in aggregator.aggregate("Sure thing, and here is more about it, ")]
    assert again == ["Sure thing, and here is more about it,"]


def test_the_replaced_aggregator_is_listed_with_the_other_private_members() -> None:
    assert {"_text_aggregator", "_text"} <= {m.name for m in PRIVATE_MEMBERS}
