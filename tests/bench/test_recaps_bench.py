"""bench/recaps.py on the bundled model: it writes a recap in the background and prints both of its tables."""

from __future__ import annotations

import re

import pytest

from bench import recaps


def test_the_bench_prints_the_recap_and_the_lesson_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert recaps.main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "### SmolLM2-135M-Instruct: recaps in the background" in out
    row = re.search(r"^\| 1 \| ([01])/1 \| (\d+\.\d) \| (\d+\.\d) \|$", out, re.MULTILINE)
    assert row is not None, out
    assert float(row.group(2)) > 0
    lesson = re.search(r"^\| 1 replies \| p50 (\d+) ms, max \d+ ms \| p50 (\d+) ms, max \d+ ms \| (\d+) \|$", out, re.M)
    assert lesson is not None, out
    assert int(lesson.group(1)) > 0 and int(lesson.group(2)) > 0
