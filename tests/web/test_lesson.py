"""A spoken lesson in a real browser: Chromium's fake microphone asks, the real pipeline and scripted LLM answer."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from harness.live_server import LiveServer
from tests.web.conftest import SILENCE_WARNING_SECS, TUTOR_REPLY, build_companion, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.voice]

LESSON_TIMEOUT_MS = 90_000
# The learner's question ("How do plants make their food?") as Whisper writes it, give or take punctuation.
HEARD = re.compile(r"plants? make (their|the) food", re.I)


def test_learner_talks_with_a_companion_and_finds_the_lesson_in_their_journey(
    voice_page: Page, voice_server: LiveServer
) -> None:
    page = voice_page
    sign_up(page, "Lena Lesson")
    build_companion(page, "Professor Leaf", "science", "Photosynthesis", duration="5 minutes")

    page.get_by_role("button", name="Start lesson").click()
    end_button = page.get_by_role("button", name="End lesson")
    expect(end_button).to_be_visible(timeout=LESSON_TIMEOUT_MS)
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live", timeout=LESSON_TIMEOUT_MS)

    transcript = page.get_by_role("log")
    tutor = transcript.locator(".bubble--assistant")
    learner = transcript.locator(".bubble--user")
    # The tutor speaks first, about the companion's topic...
    expect(tutor.filter(has_text="talking about Photosynthesis")).to_have_count(1, timeout=LESSON_TIMEOUT_MS)
    # ...and the speaking animation follows the tutor's actual audio level. (Polled by evaluate, since
    # wait_for_function evaluates its predicate with eval(), which the page's Content-Security-Policy refuses.)
    page.evaluate(
        """(timeout) => new Promise((resolve, reject) => {
          const until = Date.now() + timeout;
          const check = () => {
            const level = getComputedStyle(document.querySelector(".voice-orb")).getPropertyValue("--level");
            if (parseFloat(level) > 0.05) resolve();
            else if (Date.now() > until) reject(new Error(`the voice orb stayed still (--level ${level})`));
            else setTimeout(check, 50);
          };
          check();
        })""",
        LESSON_TIMEOUT_MS,
    )
    # The fake microphone's question is heard and transcribed, then the scripted reply comes back.
    expect(learner.first).to_contain_text(HEARD, timeout=LESSON_TIMEOUT_MS)
    expect(tutor.filter(has_text="turn sunlight")).to_have_count(1, timeout=LESSON_TIMEOUT_MS)
    expect(tutor.filter(has_text="turn sunlight")).to_contain_text(TUTOR_REPLY)
    # Chrome follows the answer's a=ptime: the microphone comes in 40 ms packets, half as many to handle.
    assert "the learner's audio arrives in 40 ms packets" in voice_server.log_path.read_text(errors="replace")
    expect(page.get_by_role("timer")).to_have_text(re.compile(r"^0[0-4]:\d\d$"))

    # Mute: the button and the learner's card say the microphone is off.
    mute = page.get_by_role("button", name="Mute microphone")
    mute.click()
    unmute = page.get_by_role("button", name="Unmute microphone")
    expect(unmute).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#mic-state")).to_have_text("Microphone off")
    unmute.click()
    expect(page.get_by_role("button", name="Mute microphone")).to_have_attribute("aria-pressed", "false")

    # Hang up: the page says how the lesson ended and links to its transcript.
    end_button.click()
    outcome = page.locator(".lesson-end")
    expect(outcome.get_by_role("heading")).to_have_text("Lesson ended")
    expect(outcome).to_contain_text("You ended the lesson")
    expect(page.get_by_role("button", name="Start lesson")).to_be_hidden()

    # My journey lists the lesson; opening it shows the stored transcript.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My journey").click()
    lessons = page.locator("#my-lessons-section")
    expect(lessons.locator(".row-item")).to_have_count(1)
    expect(lessons).to_contain_text("Professor Leaf")
    expect(lessons).to_contain_text("You ended it")
    lessons.get_by_role("link", name=re.compile("Transcript of the lesson with Professor Leaf")).click()
    expect(page).to_have_url(re.compile(r"/lessons/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Lesson with Professor Leaf")
    stored = page.locator(".transcript--stored")
    expect(stored.locator(".bubble--assistant").first).to_contain_text("talking about Photosynthesis")
    expect(stored.locator(".bubble--user").first).to_contain_text(HEARD)
    expect(stored.locator(".bubble--assistant", has_text="turn sunlight")).to_contain_text(TUTOR_REPLY)


def test_a_muted_learner_is_asked_whether_they_are_there_before_a_silent_lesson_ends(voice_page: Page) -> None:
    page = voice_page
    sign_up(page, "Sam Silent")
    build_companion(page, "Professor Hush", "science", "Photosynthesis", duration="5 minutes")
    page.get_by_role("button", name="Start lesson").click()
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live", timeout=LESSON_TIMEOUT_MS)
    # Muted before the fake microphone's question (10 s in): the server hears nothing from here on.
    page.get_by_role("button", name="Mute microphone").click()
    expect(page.locator("#mic-state")).to_have_text("Microphone off")

    notice = page.locator("#silence-notice")
    expect(notice).to_be_visible(timeout=LESSON_TIMEOUT_MS)
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("Are you still there?")
    expect(notice).to_contain_text(re.compile(r"The lesson ends in \d+ seconds? unless you speak\."))
    expect(notice).to_contain_text("Your microphone is off: unmute it to carry on.")
    seconds = int(re.search(r"ends in (\d+)", notice.inner_text()).group(1))  # type: ignore[union-attr]
    assert 0 < seconds <= SILENCE_WARNING_SECS
    # The tutor asks out loud too, and the question is a line of the transcript.
    tutor = page.get_by_role("log").locator(".bubble--assistant")
    expect(tutor.filter(has_text="still there")).to_have_count(1)

    # Nobody answers: the lesson ends for silence, and the notice goes with it.
    outcome = page.locator(".lesson-end")
    expect(outcome.get_by_role("heading")).to_have_text("Ended after a long silence", timeout=LESSON_TIMEOUT_MS)
    expect(notice).to_be_hidden()
