"""The page tells the learner about the tutor's language model: the demonstration notice, and no tutor to answer."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from tests.web.conftest import build_companion, sign_up

pytestmark = pytest.mark.browser

DEMO_NOTICE = (
    "This tutor runs on a small demonstration model (SmolLM2-135M): it answers quickly but is often wrong. "
    "Check what it says."
)
UNAVAILABLE = "Lessons are unavailable right now: the tutor cannot answer. Please try again later."
# What a server operator would read, never a learner.
OPERATOR_WORDS = re.compile(r"ollama|TUTOR_|base_url|voice\.llm", re.IGNORECASE)


def serve_model_config(page: Page, model: dict[str, Any] | None) -> None:
    """Answer /api/config as the real server does, with `voice.model` set to `model` (or left out when None)."""

    def rewrite(route: Route) -> None:
        response = route.fetch()
        config = response.json()
        config["voice"].pop("model", None)
        if model is not None:
            config["voice"]["model"] = model
        route.fulfill(response=response, body=json.dumps(config))

    page.route("**/api/config", rewrite)


def assert_no_operator_words(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert not OPERATOR_WORDS.search(text), text


def test_a_demonstration_model_is_announced_in_the_builder_and_before_a_lesson_starts(page: Page) -> None:
    serve_model_config(page, {"demo": True, "notice": DEMO_NOTICE})
    sign_up(page, "Dora Demo")

    page.goto("/companions/new")
    notice = page.get_by_role("note").filter(has_text="demonstration model")
    expect(notice).to_have_text(DEMO_NOTICE)
    expect(notice).to_be_visible()

    build_companion(page, "Demo Tutor", "science", "The water cycle")
    notice = page.get_by_role("note").filter(has_text="demonstration model")
    expect(notice).to_have_text(DEMO_NOTICE)
    expect(notice).to_be_visible()
    # The learner reads it before pressing start, which is still there to press.
    expect(page.get_by_role("button", name="Start lesson")).to_be_enabled()
    assert_no_operator_words(page)


@pytest.mark.parametrize("model", [{"demo": False, "notice": ""}, None], ids=["real-model", "older-server"])
def test_no_notice_when_the_tutor_does_not_run_the_demonstration_model(
    page: Page, model: dict[str, Any] | None
) -> None:
    serve_model_config(page, model)
    sign_up(page, "Rhea Real")

    page.goto("/companions/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("Build a new companion")
    expect(page.locator(".demo-notice")).to_have_count(0)

    build_companion(page, "Real Tutor", "maths", "Prime numbers")
    expect(page.get_by_role("button", name="Start lesson")).to_be_visible()
    expect(page.locator(".demo-notice")).to_have_count(0)
    expect(page.get_by_text("demonstration model")).to_have_count(0)


def test_a_tutor_that_cannot_answer_is_explained_calmly_and_the_learner_can_try_again(page: Page) -> None:
    sign_up(page, "Una Unanswered")
    build_companion(page, "Silent Tutor", "history", "The Silk Road")

    refused: list[str] = []

    def no_tutor(route: Route) -> None:
        if route.request.method != "POST":
            route.fallback()
            return
        refused.append(route.request.url)
        body = {"error": {"code": "llm_unavailable", "message": UNAVAILABLE}}
        route.fulfill(status=503, content_type="application/json", body=json.dumps(body))

    page.route("**/api/companions/*/lessons", no_tutor)

    start = page.get_by_role("button", name="Start lesson")
    start.click()
    lesson_page = page.locator(".lesson-page")
    # A calm notice in the server's words (a status, not an alarm), not a crashed lesson: no outcome panel, no
    # error alert, nothing counted, and the start button still there.
    notice = lesson_page.get_by_role("status").filter(has_text=UNAVAILABLE)
    expect(notice).to_have_text(UNAVAILABLE)
    expect(notice).to_be_visible()
    expect(page.locator(".lesson-end")).to_have_count(0)
    expect(lesson_page.get_by_role("alert")).to_have_count(0)
    expect(lesson_page).to_have_attribute("data-phase", "idle")
    expect(page.locator(".lesson-head")).to_contain_text("0 lessons")
    expect(page.get_by_role("button", name="End lesson")).to_be_hidden()
    assert_no_operator_words(page)

    # Trying again later is the same button, and asks the server again.
    expect(start).to_be_enabled()
    with page.expect_response(lambda response: response.status == 503):
        start.click()
    expect(notice).to_have_text(UNAVAILABLE)
    expect(lesson_page).to_have_attribute("data-phase", "idle")
    assert len(refused) == 2, refused
