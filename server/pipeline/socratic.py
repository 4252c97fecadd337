"""The socratic tutor's guard: a reply that would hand over the answer to the learner's sum is not said.

A deterministic check on the audio path (microseconds), run by the same screening stage as safety
(screening.py): the learner's turns are read for arithmetic they state ("what is 12 times 7?"), the answer is
worked out here, and a tutor reply that states it is cut before that piece reaches the voice; the tutor asks the
configured guiding question instead. Once the learner says the answer themselves, it is theirs, and the tutor may
confirm it.

What it catches: one-line arithmetic in digits or English number words with plus, minus, times (x, *), divided
by, squared and cubed, and the answer written in digits ("84", "1,008", "2.5") or words ("eighty-four"). What it
does not: word problems ("Sam has 3 apples..."), algebra, fractions, non-numeric answers (a date, a capital), an
answer given in pieces ("80 plus 4") or in a form it does not read ("a dozen"); for those the socratic prompt is
the only guard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.pipeline.screening import Finding, Screening

CATEGORY = "answer_withheld"
# The problems a lesson remembers: the learner works on a few at a time, not on every sum they ever said.
MAX_OPEN_PROBLEMS = 5

_UNITS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS = {word: 10 * (i + 2) for i, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = re.compile(
    r"\b(?:"
    + "|".join([*_UNITS, *_TENS, *_SCALES, "and"])
    + r")\b(?:[\s-]+\b(?:"
    + "|".join([*_UNITS, *_TENS, *_SCALES, "and"])
    + r")\b)*",
    re.IGNORECASE,
)
_OPERATORS = [
    (re.compile(r"\bmultiplied\s+by\b|\btimes\b|×|\*", re.IGNORECASE), "*"),
    (re.compile(r"\bdivided\s+by\b|÷|/", re.IGNORECASE), "/"),
    (re.compile(r"\bplus\b|\badd(?:ed)?\s+to\b|\+", re.IGNORECASE), "+"),
    (re.compile(r"\bminus\b|\btake\s+away\b|−", re.IGNORECASE), "-"),
    (re.compile(r"\bsquared\b", re.IGNORECASE), "^2"),
    (re.compile(r"\bcubed\b", re.IGNORECASE), "^3"),
]
# "12 x 7": an x between two numbers is a times sign ("2x + 3" is algebra, and left alone).
_X_TIMES = re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)")
_NUMBER = r"\d+(?:\.\d+)?"
_EXPRESSION = re.compile(rf"{_NUMBER}(?:\s*(?:[-+*/]\s*{_NUMBER}|\^[23]))+")
_TERM = re.compile(rf"{_NUMBER}|[-+*/]|\^[23]")
_NUMBERS = re.compile(_NUMBER)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_SAID_AS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by", "^2": "squared", "^3": "cubed"}


def _spoken_numbers(words: str) -> str:
    """A run of number words as digits: "one hundred and five" -> "105", "seven and eight" -> "7 and 8"."""
    out: list[str] = []
    total, current, last = 0, 0, ""

    def flush() -> None:
        nonlocal total, current, last
        if last:
            out.append(str(total + current))
        total, current, last = 0, 0, ""

    tokens = [w for w in re.split(r"[\s-]+", words.lower()) if w]
    for i, word in enumerate(tokens):
        if word == "and":
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            if last in ("hundred", "scale") and (following in _UNITS or following in _TENS):
                continue  # "one hundred and five"
            flush()
            out.append("and")
        elif word in _UNITS:
            if last in ("unit", "teen") or (last == "tens" and (_UNITS[word] == 0 or _UNITS[word] > 9)):
                flush()
            current += _UNITS[word]
            last = "teen" if _UNITS[word] > 9 else "unit"
        elif word in _TENS:
            if last in ("unit", "teen", "tens"):
                flush()
            current += _TENS[word]
            last = "tens"
        elif word == "hundred":
            if last == "hundred":
                flush()
            current = max(current, 1) * 100
            last = "hundred"
        else:
            if last == "scale":
                flush()
            total += max(current, 1) * _SCALES[word]
            current, last = 0, "scale"
    flush()
    return " ".join(out)


def as_digits(text: str) -> str:
    """The text with number words as digits ("eighty-four" -> "84"), thousands commas dropped and spoken
    operators as signs ("12 times 7" -> "12 * 7")."""
    text = _NUMBER_WORD.sub(lambda match: _spoken_numbers(match.group(0)), text)
    text = _THOUSANDS.sub("", text)
    text = _X_TIMES.sub(" * ", text)
    for pattern, sign in _OPERATORS:
        text = pattern.sub(f" {sign} ", text)
    return text


def _evaluate(terms: list[str]) -> float | None:
    """Numbers and operators, with powers before products before sums; None when it cannot be worked out."""
    values: list[float] = []
    ops: list[str] = []
    for term in terms:
        if term in ("^2", "^3"):
            if not values:
                return None
            values[-1] = values[-1] ** int(term[1])
        elif term in "+-*/":
            ops.append(term)
        else:
            values.append(float(term))
    if len(values) != len(ops) + 1:
        return None
    # Products and quotients first, left to right.
    sums_values, sums_ops = [values[0]], []
    for op, value in zip(ops, values[1:], strict=True):
        if op == "*":
            sums_values[-1] *= value
        elif op == "/":
            if value == 0:
                return None
            sums_values[-1] /= value
        else:
            sums_ops.append(op)
            sums_values.append(value)
    result = sums_values[0]
    for op, value in zip(sums_ops, sums_values[1:], strict=True):
        result = result + value if op == "+" else result - value
    return result


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6 * max(1.0, abs(b))


@dataclass(frozen=True)
class Problem:
    """A sum the learner stated: as they might hear it said back, its answer, and the numbers it was made of."""

    said: str
    answer: float
    operands: tuple[float, ...]


def problems_in(text: str) -> list[Problem]:
    """The arithmetic problems stated in a learner's turn."""
    found = []
    for match in _EXPRESSION.finditer(as_digits(text)):
        terms = _TERM.findall(match.group(0))
        answer = _evaluate(terms)
        if answer is None or len([t for t in terms if t[0].isdigit()]) + terms.count("^2") + terms.count("^3") < 2:
            continue
        said = " ".join(_SAID_AS.get(t, t) for t in terms)
        operands = tuple(float(t) for t in terms if t[0].isdigit())
        found.append(Problem(said, round(answer, 6), operands))
    return found


# The forms in which a reply states a result ("is 7", "= 7", "makes 7"): needed when the answer is also one of
# the problem's own numbers (7 times 1), which the tutor may well say back.
_STATES = r"(?:=|\bis\b|\bequals\b|\bmakes\b|\bgives\b|\bgets?\b|\bthat's\b|\bit's\b)\s*(?:about\s+|exactly\s+)?"


def states_answer(reply: str, problem: Problem) -> bool:
    """Whether the reply (so far) says the problem's answer."""
    text = as_digits(reply)
    if any(_same(problem.answer, operand) for operand in problem.operands):
        return any(_same(float(m.group(1)), problem.answer) for m in re.finditer(_STATES + rf"({_NUMBER})\b", text))
    return any(_same(float(n), problem.answer) for n in _NUMBERS.findall(text))


def says_own_answer(turn: str, problem: Problem) -> bool:
    """Whether the learner's turn gives the answer outside any sum it states ("is it 84?")."""
    text = _EXPRESSION.sub(" ", as_digits(turn))
    return any(_same(float(n), problem.answer) for n in _NUMBERS.findall(text))


@dataclass(frozen=True)
class AnswerGiven:
    """A reply that would have handed over the answer: it is cut, and `say` is said instead of the redirect."""

    say: str
    category: str = CATEGORY
    severity: str = "low"
    action: str = "replaced"


class AnswerGuard:
    """One lesson's open problems: those the learner stated and has not yet answered themselves."""

    def __init__(self, guiding_question: str) -> None:
        """`guiding_question`: said instead; "{problem}" in it is the problem as the learner said it."""
        self._guiding = guiding_question
        self._open: list[Problem] = []

    @property
    def open_problems(self) -> list[Problem]:
        return list(self._open)

    def hear(self, turn: str) -> None:
        """A learner's finished turn: the problems it states are open, those it answers are closed."""
        self._open = [p for p in self._open if not says_own_answer(turn, p)]
        for problem in problems_in(turn):
            if not says_own_answer(turn, problem):
                self._open = [p for p in self._open if p.said != problem.said] + [problem]
        del self._open[:-MAX_OPEN_PROBLEMS]

    def check(self, reply: str) -> AnswerGiven | None:
        """The tutor's reply so far: a finding if it states an open problem's answer."""
        for problem in reversed(self._open):
            if states_answer(reply, problem):
                return AnswerGiven(self._guiding.replace("{problem}", problem.said))
        return None


@dataclass(frozen=True)
class _Noted:
    category: str
    severity: str
    action: str = "none"


def guard_answers(screening: Screening | None, guard: AnswerGuard) -> Screening:
    """The lesson's screening with the guard added: safety's own checks run first and win, and the guard's
    findings stay out of its report (withholding an answer is teaching, not a safety flag)."""
    # Here, not at the top, like server/safety.py: the screening stage is pipecat's.
    from server.pipeline.screening import Screening

    def learner(text: str) -> Finding | None:
        guard.hear(text)
        return screening.learner(text) if screening is not None else None

    def tutor(text: str) -> Finding | None:
        found = screening.tutor(text) if screening is not None else None
        if found is not None and found.action == "replaced":
            return found
        given = guard.check(text)
        return given if given is not None else found

    def report(role: str, text: str, finding: Finding | None) -> None:
        if screening is None:
            return
        if finding is not None and finding.category == CATEGORY:
            # What safety alone would have said of it; not said in full, so only noted.
            found = screening.tutor(text) if role == "assistant" else None
            finding = None if found is None else _Noted(found.category, found.severity)
        screening.report(role, text, finding)

    return Screening(learner=learner, tutor=tutor, report=report)
