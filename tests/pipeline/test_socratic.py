"""The socratic guard's check: which sums it reads in a learner's turn, and which replies it finds give the answer."""

from __future__ import annotations

import pytest

from server.pipeline.socratic import AnswerGuard, as_digits, problems_in, states_answer

GUIDING = "What could be a first step for {problem}?"


@pytest.mark.parametrize(
    ("turn", "said", "answer"),
    [
        ("What is 12 times 7?", "12 times 7", 84),
        ("what is twelve times seven", "12 times 7", 84),
        ("My homework says 12 x 7, what's that?", "12 times 7", 84),
        ("What's 144 divided by 12?", "144 divided by 12", 12),
        ("can you do fifteen plus twenty-seven", "15 plus 27", 42),
        ("one hundred and five minus five", "105 minus 5", 100),
        ("what is 9 squared", "9 squared", 81),
        ("what is 2 plus 3 times 4", "2 plus 3 times 4", 14),
        ("10 divided by 4", "10 divided by 4", 2.5),
    ],
)
def test_a_sum_the_learner_states_is_read_with_its_answer(turn: str, said: str, answer: float) -> None:
    [problem] = problems_in(turn)
    assert (problem.said, problem.answer) == (said, answer)


@pytest.mark.parametrize(
    "turn", ["I have 3 apples and eat 1", "Solve 2x + 3 = 11", "What is a neural network?", "seven and eight"]
)
def test_what_is_not_one_line_arithmetic_is_left_alone(turn: str) -> None:
    assert problems_in(turn) == []


def test_number_words_are_read_as_numbers_and_not_run_together() -> None:
    assert as_digits("eighty-four") == "84"
    assert as_digits("two thousand three hundred and forty five").strip() == "2345"
    assert as_digits("seven and eight") == "7 and 8"
    assert as_digits("bread and butter") == "bread and butter"


@pytest.mark.parametrize(
    ("reply", "gives"),
    [
        ("12 times 7 is 84.", True),
        ("That makes eighty-four!", True),
        ("The answer is 84, well done.", True),
        ("What is 10 times 7 first? And 2 times 7?", False),
        ("Let's break 12 into 10 and 2.", False),
    ],
)
def test_a_reply_that_states_the_answer_is_found(reply: str, gives: bool) -> None:
    [problem] = problems_in("what is 12 times 7?")
    assert states_answer(reply, problem) is gives


def test_an_answer_that_is_one_of_the_sums_numbers_counts_only_when_stated_as_the_result() -> None:
    [problem] = problems_in("what is 144 divided by 12")
    assert not states_answer("Think of 144 as 12 groups. How many twelves make 144?", problem)
    assert states_answer("144 divided by 12 is 12.", problem)


def test_the_guard_cuts_the_answer_until_the_learner_gives_it_themselves() -> None:
    guard = AnswerGuard(GUIDING)
    guard.hear("What is 12 times 7? Just tell me.")
    finding = guard.check("Sure! 12 times 7 is 84.")
    assert finding is not None and finding.action == "replaced"
    assert finding.say == "What could be a first step for 12 times 7?"
    assert guard.check("What is 10 times 7?") is None
    # Still open on the next turn: asking again does not unlock it.
    guard.hear("Please, just the answer.")
    assert guard.check("It's 84.") is not None
    # The learner worked it out: the tutor may now confirm it.
    guard.hear("Is it 84?")
    assert guard.check("Yes, 84 is right!") is None
