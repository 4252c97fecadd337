"""Teaching styles and review progress in a real browser: the builder's "How it teaches" choice, and my journey's
"3 of 5 review questions answered right" per companion; both keyboard-reachable and axe-clean."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from harness.live_server import LiveServer
from tests.web.conftest import assert_no_axe_violations, build_companion, sign_up

pytestmark = pytest.mark.browser

QUESTIONS = [
    "What does a weight do?",
    "What does the bias add?",
    "What is a layer?",
    "What is training?",
    "What does the activation decide?",
]


def past_quiz(server: LiveServer, learner_id: int, companion_id: int, right: int) -> None:
    """What earlier lessons left in the server's database: a recap with five review questions, `right` of them
    since answered right (the page only reads them; the routes that write them are tested in tests/test_teaching.py)."""
    at = datetime.now(UTC).isoformat(sep=" ")
    with sqlite3.connect(server.data_dir / "tutor.db") as db:
        lesson = db.execute(
            "INSERT INTO lessons (companion_id, learner_id, started_at, ended_at, length_seconds, end_reason, "
            "companion_name, companion_subject, companion_topic) VALUES (?, ?, ?, ?, 300, 'customer-ended-call', "
            "'Quizzy', 'science', 'Neural networks')",
            (companion_id, learner_id, at, at),
        ).lastrowid
        db.execute(
            "INSERT INTO lesson_recaps (lesson_id, status, covered, hard, review_questions, model, created_at) "
            "VALUES (?, 'ready', 'neurons', '', ?, 'scripted', ?)",
            (lesson, json.dumps(QUESTIONS), at),
        )
        for question in QUESTIONS[:right]:
            db.execute(
                "INSERT INTO review_progress (learner_id, companion_id, question, lesson_id, asked_count, "
                "answered_correctly_at, last_asked_at, created_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
                (learner_id, companion_id, question, lesson, at, at, at),
            )


def test_the_builder_asks_how_the_companion_teaches(page: Page) -> None:
    sign_up(page)
    page.goto("/companions/new")
    group = page.get_by_role("group", name="How it teaches")
    expect(group.get_by_role("radio")).to_have_count(3)
    expect(group.get_by_role("radio", name="Explains")).to_be_checked()
    assert_no_axe_violations(page, "the builder with its teaching choice")

    companion_id = build_companion(page, "Soko", "maths", "Times tables")
    page.goto(f"/companions/{companion_id}/edit")
    page.get_by_role("radio", name="Guides with questions").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(f"/companions/{companion_id}")
    teaching = page.evaluate(f"fetch('/api/companions/{companion_id}').then((r) => r.json()).then((c) => c.teaching)")
    assert teaching == "socratic"


def test_my_journey_shows_how_many_review_questions_i_answered_right(page: Page, ui_server: LiveServer) -> None:
    sign_up(page)
    companion_id = build_companion(page, "Quizzy", "science", "Neural networks")
    me = page.evaluate("fetch('/api/me').then((r) => r.json())")
    past_quiz(ui_server, me["id"], companion_id, right=3)

    page.goto("/journey")
    section = page.get_by_role("region", name="Review questions")
    expect(section).to_contain_text("Quizzy")
    expect(section).to_contain_text("3 of 5 review questions answered right")
    bar = section.get_by_role("progressbar", name="Quizzy: 3 of 5 review questions answered right")
    expect(bar).to_have_attribute("aria-valuenow", "3")
    section.get_by_text("Show the questions").click()
    expect(section.get_by_role("listitem")).to_have_count(5)
    expect(section.get_by_role("listitem").filter(has_text="What is training?")).to_contain_text("Not yet")
    assert_no_axe_violations(page, "my journey with review progress")
