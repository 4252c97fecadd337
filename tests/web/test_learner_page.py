"""The learner's page as issue 15 found it and wants it: a lesson's transcript in view, sign-up, focus, the clock.

Lessons run in hosted mode against a stand-in for the @vapi-ai/web SDK that the test can make speak, so a lesson
runs (and ends) without speech models; everything else is the real page against the real server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from harness.live_server import LiveServer
from tests.web.conftest import PASSWORD, assert_no_axe_violations, open_page, sign_up, unique_email

pytestmark = pytest.mark.browser

SDK_PATH = "/test-sdk/speaking-vapi.js"
# Every lesson on this server is capped a little over a minute, so the one-minute warning comes at once.
CAP_SECS = 63

# The SDK's interface; the call is on window.__call so a test can put words in the tutor's and learner's mouths.
SPEAKING_SDK = """
export default class Vapi {
  constructor() { this.listeners = {}; this.muted = false; window.__call = this; }
  on(event, fn) { (this.listeners[event] = this.listeners[event] || []).push(fn); return this; }
  once(event, fn) { const wrap = (...a) => { this.off(event, wrap); fn(...a); }; return this.on(event, wrap); }
  off(event, fn) { this.listeners[event] = (this.listeners[event] || []).filter((f) => f !== fn); return this; }
  removeAllListeners(event) { if (event) delete this.listeners[event]; else this.listeners = {}; return this; }
  emit(event, ...args) { for (const fn of [...(this.listeners[event] || [])]) fn(...args); }
  say(role, text) {
    this.emit("message", { type: "transcript", role, transcriptType: "final", transcript: text });
  }
  async start() {
    setTimeout(() => {
      this.emit("call-start");
      this.say("assistant", "Hello, let's start the session.");
    }, 50);
    return { id: "call_test" };
  }
  stop() {
    setTimeout(() => {
      this.emit("message", { type: "status-update", status: "ended", endedReason: "customer-ended-call" });
      this.emit("call-end");
    }, 20);
  }
  setMuted(muted) { this.muted = Boolean(muted); }
  isMuted() { return this.muted; }
  send() {}
}
"""

LAPTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def lesson_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "TUTOR_VOICE__BACKEND": "vapi",
        "TUTOR_VOICE__PRELOAD": "false",
        "TUTOR_VOICE__MAX_LESSON_SECS": str(CAP_SECS),
        "TUTOR_VAPI__PUBLIC_KEY": "pk_test_learner_page",
        "TUTOR_VAPI__SDK_URL": SDK_PATH,
    }
    with LiveServer(tmp_path_factory.mktemp("learner-page"), env) as server:
        yield server


def _speaking_sdk(page: Page) -> None:
    page.route(f"**{SDK_PATH}", lambda route: route.fulfill(content_type="text/javascript", body=SPEAKING_SDK))


def new_companion(page: Page, name: str, subject: str = "science", topic: str = "Photosynthesis") -> int:
    """A ten-minute companion made through the API (the builder has its own tests), then its page opened."""
    voice = page.request.get("/api/config").json().get("default_voice", "female")
    body = {"name": name, "subject": subject, "topic": topic, "voice": voice, "style": "casual", "duration": 10}
    answer = page.request.post("/api/companions", data=body)
    assert answer.status == 201, answer.text()
    companion = int(answer.json()["id"])
    page.goto(f"/companions/{companion}")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    return companion


def start_lesson(page: Page, name: str) -> int:
    companion = new_companion(page, name)
    page.get_by_role("button", name="Start lesson").click()
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
    return companion


def in_view(page: Page, selector: str) -> dict[str, float]:
    """The element's box, and the part of the screen it may use: below the sticky header, above a tab bar."""
    box: dict[str, float] = page.evaluate(
        """(selector) => {
          const el = document.querySelector(selector);
          const rect = el.getBoundingClientRect();
          const header = document.getElementById("site-header").getBoundingClientRect();
          const nav = document.querySelector(".main-nav");
          const fixedNav = nav && getComputedStyle(nav).position === "fixed";
          return {
            top: rect.top, bottom: rect.bottom, height: rect.height,
            screenTop: header.bottom,
            screenBottom: fixedNav ? nav.getBoundingClientRect().top : window.innerHeight,
          };
        }""",
        selector,
    )
    return box


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_live_transcript_is_in_view_during_a_lesson(
    browser: Browser, lesson_server: LiveServer, viewport: ViewportSize
) -> None:
    with open_page(browser, lesson_server.base_url, viewport) as page:
        _speaking_sdk(page)
        sign_up(page, "Tia Transcript")
        start_lesson(page, "Professor View")
        transcript = page.get_by_role("log")
        expect(transcript.locator(".bubble--assistant")).to_contain_text("let's start the session")
        # A long lesson: many more lines than the transcript has room for.
        for n in range(1, 13):
            page.evaluate(
                "([role, text]) => window.__call.say(role, text)",
                ["user" if n % 2 else "assistant", f"Line {n} of the lesson, long enough to take a full row or two."],
            )
        expect(transcript.locator(".bubble")).to_have_count(13)
        # Nobody scrolled: the page stays where the lesson put it, and the transcript follows the newest line.
        assert page.evaluate("window.scrollY") == 0
        panel = in_view(page, ".transcript-panel")
        assert panel["top"] < panel["screenBottom"] - 200, f"the transcript starts too low: {panel}"
        newest = transcript.locator(".bubble").last
        expect(newest).to_contain_text("Line 12")
        page.wait_for_timeout(600)  # the transcript scrolls smoothly to its end
        line = in_view(page, ".transcript .bubble:last-child")
        assert line["top"] >= line["screenTop"] and line["bottom"] <= line["screenBottom"], (
            f"the newest line is off screen at {viewport}: {line}"
        )
        # The controls are on screen too.
        for name in ("End lesson", "Mute microphone"):
            button = page.get_by_role("button", name=name).bounding_box()
            assert button is not None and button["y"] >= panel["screenTop"], f"{name} is off screen: {button}"
            assert button["y"] + button["height"] <= panel["screenBottom"], f"{name} is off screen: {button}"
        # And the lesson stays as wide as the screen, and accessible as it is drawn now.
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert_no_axe_violations(page, context=f"a lesson with a long transcript at {viewport}")


def test_start_focuses_end_lesson_and_live_goes_when_the_lesson_ends(
    browser: Browser, lesson_server: LiveServer
) -> None:
    with open_page(browser, lesson_server.base_url, LAPTOP) as page:
        _speaking_sdk(page)
        sign_up(page, "Fay Focus")
        new_companion(page, "Professor Focus")
        live = page.locator(".live-dot")
        expect(live).to_be_hidden()
        page.get_by_role("button", name="Start lesson").focus()
        page.keyboard.press("Enter")
        end = page.get_by_role("button", name="End lesson")
        expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
        # Focus moved to the button that now ends the lesson, not to <body>.
        expect(end).to_be_focused()
        expect(live).to_be_visible()
        expect(live).to_have_text("Live")

        page.keyboard.press("Enter")
        outcome = page.locator(".lesson-end")
        expect(outcome.get_by_role("heading")).to_have_text("Lesson ended")
        expect(outcome.get_by_role("heading")).to_be_focused()
        expect(live).to_be_hidden()
        expect(page.get_by_text("Live", exact=True)).to_be_hidden()

        # "Start another lesson" goes away as it is pressed; focus goes to the new lesson's end button.
        outcome.get_by_role("button", name="Start another lesson").click()
        expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
        expect(end).to_be_focused()


def test_the_one_minute_warning_is_said_in_words(browser: Browser, lesson_server: LiveServer) -> None:
    with open_page(browser, lesson_server.base_url, LAPTOP) as page:
        _speaking_sdk(page)
        sign_up(page, "Wes Warning")
        start_lesson(page, "Professor Clock")
        # The server caps the lesson at 63 s: the clock passes one minute left within a few seconds.
        warning = page.locator("#time-warning")
        expect(warning).to_have_text("One minute left in this lesson.", timeout=10_000)
        expect(warning).to_be_visible()
        expect(warning).to_have_attribute("role", "status")
        expect(page.locator(".countdown")).to_have_class(re.compile("countdown--warn"))
        # Once the lesson is over the warning has nothing left to say.
        page.get_by_role("button", name="End lesson").click()
        expect(page.locator(".lesson-end").get_by_role("heading")).to_have_text("Lesson ended")
        expect(warning).to_be_hidden()


def test_the_teacher_can_read_notice_comes_before_the_lesson(browser: Browser, lesson_server: LiveServer) -> None:
    with open_page(browser, lesson_server.base_url, LAPTOP) as page:
        _speaking_sdk(page)
        sign_up(page, "Nia Notice")
        new_companion(page, "Professor Privacy")
        notice = page.locator("#lesson-privacy")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Your teacher and your school's administrators can read their transcripts")
        # A screen reader hears it with the button that starts the lesson.
        start = page.get_by_role("button", name="Start lesson")
        expect(start).to_have_accessible_description(re.compile("can read their transcripts"))
        start.click()
        expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
        expect(notice).to_be_hidden()
        page.get_by_role("button", name="End lesson").click()
        expect(page.locator(".lesson-end").get_by_role("heading")).to_have_text("Lesson ended")
        # Before the next lesson it is said again.
        expect(notice).to_be_visible()


def test_a_bookmark_toggle_keeps_focus(browser: Browser, lesson_server: LiveServer) -> None:
    with open_page(browser, lesson_server.base_url, LAPTOP) as page:
        sign_up(page, "Bo Bookmark")
        companion = new_companion(page, "Professor Mark", "history", "The Romans")
        # On the companion page (with its word) and on a library card (icon only).
        for path in (f"/companions/{companion}", "/companions"):
            page.goto(path)
            toggle = page.get_by_role("button", name="Bookmark Professor Mark")
            before = toggle.get_attribute("aria-pressed")
            toggle.focus()
            page.keyboard.press("Enter")
            expect(toggle).not_to_have_attribute("aria-pressed", before or "")
            expect(toggle).to_be_focused()
            page.keyboard.press("Space")
            expect(toggle).to_have_attribute("aria-pressed", before or "")
            expect(toggle).to_be_focused()
        # Its visible word is part of its name, whether or not it is pressed.
        page.goto(f"/companions/{companion}")
        toggle = page.get_by_role("button", name="Bookmark Professor Mark")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        assert toggle.inner_text().strip() == "Bookmark"


def test_sign_up_states_the_rule_and_shows_every_problem_at_once(page: Page) -> None:
    page.goto("/signup")
    # The rule is there before anything is typed.
    password = page.get_by_label("Password")
    expect(password).to_have_accessible_description(re.compile(r"At least 8 characters"))
    page.get_by_label("Email").fill("not-an-address")
    password.fill("short")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/api/auth/register" in request.url else None)
    page.get_by_role("button", name="Create account").click()

    # Every field at once, in plain words, without a round trip.
    expect(page.locator("#signup-name-error")).to_have_text("Enter your name.")
    expect(page.locator("#signup-email-error")).to_have_text("Enter an e-mail address like name@school.org.")
    expect(page.locator("#signup-password-error")).to_have_text("Use at least 8 characters.")
    expect(page.locator(".form-alert-slot .alert")).to_have_text("Please fix the 3 highlighted fields.")
    expect(page.get_by_label("Your name")).to_be_focused()
    assert requests == []
    expect(page.get_by_text("String should match pattern")).to_have_count(0)

    # The server says the same, every field in one answer, if the page's checks are skipped.
    answer = page.request.post(
        "/api/auth/register",
        data={"email": "not-an-address", "password": "", "name": ""},
        headers={"Origin": page.url.split("/signup")[0]},
    )
    assert answer.status == 400
    fields = answer.json()["error"]["fields"]
    assert fields["email"] == "Enter an e-mail address like name@school.org."
    assert set(fields) == {"email", "password", "name"}

    # A problem only the server can see (a common password) shows next to its field.
    page.get_by_label("Your name").fill("Ada New")
    page.get_by_label("Email").fill(unique_email("common"))
    password.fill("password123")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#signup-password-error")).to_contain_text("one of the most common passwords")
    expect(page.locator("#signup-name-error")).to_be_hidden()
    expect(page.locator("#signup-email-error")).to_be_hidden()
    expect(password).to_be_focused()


def test_a_new_learner_is_welcomed_and_a_returning_one_welcomed_back(page: Page) -> None:
    email = sign_up(page, "Nell Newcomer")  # waits for "Welcome, Nell"
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Nell")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome back, Nell")


def test_the_phones_sign_out_button_has_a_name(browser: Browser, lesson_server: LiveServer) -> None:
    with open_page(browser, lesson_server.base_url, PHONE) as page:
        sign_up(page, "Pip Phone")
        sign_out = page.get_by_role("button", name="Sign out")
        expect(sign_out).to_be_visible()
        box = sign_out.bounding_box()
        assert box is not None and box["width"] < 60, f"the word shows on a phone: {box}"
        sign_out.click()
        expect(page.get_by_role("link", name="Sign in").first).to_be_visible()


def test_home_lists_taught_companions_and_each_lessons_own_length(browser: Browser, lesson_server: LiveServer) -> None:
    with open_page(browser, lesson_server.base_url, LAPTOP) as page:
        _speaking_sdk(page)
        sign_up(page, "Hal Home")
        untaught = new_companion(page, "Professor Unused", "maths", "Fractions")
        taught = start_lesson(page, "Professor Taught")
        # Three lessons: more than any other test's companion here, so it is among home's three most taught.
        for again in (True, True, False):
            page.get_by_role("button", name="End lesson").click()
            outcome = page.locator(".lesson-end")
            expect(outcome.get_by_role("heading")).to_have_text("Lesson ended")
            if again:
                outcome.get_by_role("button", name="Start another lesson").click()
                expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")

        lesson = page.request.get("/api/me/lessons").json()["items"][0]
        assert lesson["ended_at"] is not None and lesson["length_seconds"] < 60

        page.goto("/")
        popular = page.locator("section", has=page.get_by_role("heading", name="Popular companions"))
        expect(popular.locator(f"[data-companion-id='{taught}']")).to_have_count(1)
        expect(popular.locator(f"[data-companion-id='{untaught}']")).to_have_count(0)
        expect(popular).not_to_contain_text("Professor Unused")
        # The API's list says the same: only companions that have had lessons.
        listed = page.request.get("/api/companions?sort=popular&taught=true&limit=100").json()["items"]
        assert all(c["lessons_count"] > 0 for c in listed) and untaught not in [c["id"] for c in listed]

        recent = page.locator("section", has=page.get_by_role("heading", name="Recently completed lessons"))
        row = recent.locator(f"[data-lesson-id='{lesson['id']}']")
        expect(row).to_contain_text("Professor Taught")
        # The lesson lasted seconds; the companion is planned for ten minutes.
        seconds = lesson["length_seconds"]
        expect(row).to_contain_text(f"{seconds} s")
        expect(row).not_to_contain_text("10 min")
        expect(row).to_contain_text("You ended it")
