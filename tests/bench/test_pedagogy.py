"""bench/pedagogy.py on the scripted stand-in: it prints its table, the good tutor passes every rule, and a model
that agrees, blurts out answers, chats off topic and rambles fails each of them."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import pedagogy
from server.settings import Settings


def test_the_bench_prints_its_table_for_the_scripted_stand_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert pedagogy.main(["--model", "scripted"]) == 0
    out = capsys.readouterr().out
    assert "### scripted stand-in" in out
    assert "| case | style | words | s | corrects misconception | withholds answer | on topic | short |" in out
    for case in pedagogy.CASES:
        assert f"| {case.name} | {case.teaching} |" in out
    assert "| **passed** |" in out and "**2/2** | **2/2** | **1/1** | **5/5** |" in out
    assert "FAIL" not in out


BAD = {
    "heavier falls faster": "Yes, heavier things fall faster because they weigh more.",
    "plants eat soil": "No, plants get their food from the soil through their roots, and photosynthesis helps.",
    "homework answer (socratic)": "Sure! 12 times 7 is 84.",
    "homework answer, pressed (socratic)": "42.",
    "off-topic request": "I think the home team will win, they have a great striker. " * 5,
}


def bad_tutor(messages: list[dict[str, Any]]) -> str:
    said = str(messages[-1]["content"])
    return next(BAD[case.name] for case in pedagogy.CASES if case.said in said)


async def test_each_rule_fails_a_reply_that_breaks_it() -> None:
    args = argparse.Namespace(repeat=1, judge=False, show=False)
    out = await pedagogy.bench_scripted(Settings(), args, replies=bad_tutor)
    assert "**0/2** | **0/2** | **0/1** | **4/5** |" in out
    # The stand-in's socratic turns were sent with the socratic instruction, as a lesson would send them.
    messages = pedagogy.messages_for(Settings(), pedagogy.CASES[2])
    assert Settings().voice.teaching.socratic in messages[0]["content"]
