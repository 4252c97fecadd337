"""Recaps and memory in the page: after a spoken lesson the lesson page shows its recap, and my journey shows it
with the list of what the tutor remembers, each fact with its own delete button; axe-clean throughout."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.live_server import LiveServer
from harness.scripted_llm import MODEL_ID, ScriptedLLM
from server.recaps import RECAP_PROMPT
from tests.web.conftest import TUTOR_REPLY, assert_no_axe_violations, build_companion, open_page, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.voice]

LESSON_TIMEOUT_MS = 90_000
COVERED = "how green plants make sugar from sunlight"
FACTS = ["Curious about plants", "Mixes up oxygen and carbon dioxide"]
RECAP = {
    "covered": COVERED,
    "hard": "Which gas plants take in.",
    "questions": ["What do plants need to make food?", "Which gas do plants give off?"],
    "facts": FACTS,
}


def tutor(messages: list[dict[str, Any]]) -> str:
    if messages and str(messages[0].get("content", "")).startswith(RECAP_PROMPT[:40]):
        return json.dumps(RECAP)
    return TUTOR_REPLY


@pytest.fixture(scope="module")
def recap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The voice server with the scripted model, where the fake microphone's one question is enough for a recap."""
    with ScriptedLLM(tutor) as llm:
        env = {
            "TUTOR_VOICE__LLM__BASE_URL": llm.base_url,
            "TUTOR_VOICE__LLM__MODEL": MODEL_ID,
            "TUTOR_VOICE__LLM__TIMEOUT_SECS": "10",
            "TUTOR_SAFETY__CLASSIFIER": "off",
            "TUTOR_RECAPS__MIN_LEARNER_UTTERANCES": "1",
            "TUTOR_RECAPS__MIN_LEARNER_WORDS": "3",
        }
        with LiveServer(tmp_path_factory.mktemp("recap-server"), env) as server:
            yield server


@pytest.fixture
def recap_page(voice_browser: Browser, recap_server: LiveServer) -> Iterator[Page]:
    with open_page(voice_browser, recap_server.base_url, {"width": 1280, "height": 1000}) as page:
        yield page


def test_the_recap_shows_after_the_lesson_and_in_my_journey_with_what_the_tutor_remembers(recap_page: Page) -> None:
    page = recap_page
    sign_up(page, "Rita Recap")
    build_companion(page, "Professor Leaf", "science", "Photosynthesis", duration="5 minutes")

    page.get_by_role("button", name="Start lesson").click()
    transcript = page.get_by_role("log")
    expect(transcript.locator(".bubble--user").first).to_be_visible(timeout=LESSON_TIMEOUT_MS)
    expect(transcript.locator(".bubble--assistant").filter(has_text="turn sunlight")).to_have_count(
        1, timeout=LESSON_TIMEOUT_MS
    )
    page.get_by_role("button", name="End lesson").click()

    # After the lesson: its recap, once written.
    recap = page.get_by_role("region", name="Lesson recap")
    expect(recap.locator(".recap__covered")).to_have_text(COVERED, timeout=30_000)
    expect(recap.locator(".recap__hard")).to_have_text(RECAP["hard"])
    expect(recap.locator(".recap__questions li")).to_have_text(RECAP["questions"])
    expect(recap.get_by_role("button", name="Write it again")).to_be_visible()
    assert_no_axe_violations(page, "the lesson's end with its recap")

    # Writing it again shows it pending, then written again.
    recap.get_by_role("button", name="Write it again").click()
    expect(recap.locator(".recap__covered")).to_have_text(COVERED, timeout=30_000)

    # My journey: the lesson with what it covered, and what the tutor remembers, each deletable.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My journey").click()
    expect(page.locator("#my-lessons-section .row-item")).to_have_count(1)
    expect(page.locator("#my-lessons-section .row-item__recap")).to_have_text(re.compile(COVERED))
    remembered = page.get_by_role("region", name="What your tutor remembers about you")
    expect(remembered.locator(".facts__text")).to_have_text(FACTS)
    assert_no_axe_violations(page, "my journey with recaps and facts")

    remembered.get_by_role("button", name=f"Forget: {FACTS[1]}").click()
    expect(remembered.locator(".facts__text")).to_have_text(FACTS[:1])
    page.reload()
    remembered = page.get_by_role("region", name="What your tutor remembers about you")
    expect(remembered.locator(".facts__text")).to_have_text(FACTS[:1])
    remembered.get_by_role("button", name=f"Forget: {FACTS[0]}").click()
    expect(remembered.locator(".facts__empty")).to_be_visible()
    assert_no_axe_violations(page, "my journey with nothing remembered")

    # The stored lesson's page shows the recap too.
    page.locator("#my-lessons-section .row-item__title").click()
    expect(page.get_by_role("region", name="Lesson recap").locator(".recap__covered")).to_have_text(COVERED)
