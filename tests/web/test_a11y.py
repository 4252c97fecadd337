"""axe-core on every screen of the learner page, on a laptop and on a phone, a lesson running and ended included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.live_server import LiveServer
from tests.web.conftest import axe_violations, format_violations, open_page, sign_up
from tests.web.test_hosted import PUBLIC_KEY, SDK_PATH, STAND_IN_SDK
from tests.web.test_learner_page import new_companion

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


class Screens:
    """axe-core's findings screen by screen, so one failure lists every screen's violations, not the first."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.found: dict[str, list[dict[str, Any]]] = {}

    def check(self, name: str) -> None:
        expect(self.page.locator("#main")).not_to_have_attribute("aria-busy", "true")
        violations = axe_violations(self.page)
        if violations:
            self.found[name] = violations

    def assert_clean(self) -> None:
        report = "\n".join(f"{name}:\n{format_violations(v)}" for name, v in self.found.items())
        assert not self.found, f"axe-core found violations on {len(self.found)} screen(s):\n{report}"


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Hosted mode with the stand-in SDK, so a lesson runs and ends without speech models."""
    env = {
        "TUTOR_VOICE__BACKEND": "vapi",
        "TUTOR_VOICE__PRELOAD": "false",
        "TUTOR_VAPI__PUBLIC_KEY": PUBLIC_KEY,
        "TUTOR_VAPI__SDK_URL": SDK_PATH,
    }
    with LiveServer(tmp_path_factory.mktemp("a11y-hosted"), env) as server:
        yield server


def _stand_in(page: Page) -> None:
    page.route(f"**{SDK_PATH}", lambda route: route.fulfill(content_type="text/javascript", body=STAND_IN_SDK))


def test_every_screen_passes_axe(page: Page) -> None:
    screens = Screens(page)
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screens.check("home, signed out")
    page.goto("/plans")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screens.check("plans, signed out")
    page.goto("/signin")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    screens.check("sign-in")
    page.goto("/signup")
    expect(page.get_by_role("button", name="Create account")).to_be_visible()
    screens.check("sign-up")
    # The form with every field's message showing.
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#signup-email-error")).to_be_visible()
    screens.check("sign-up with errors")

    sign_up(page, "Axel Access")
    screens.check("home, new learner")
    page.goto("/companions/new")
    expect(page.get_by_role("button", name="Build your companion")).to_be_visible()
    screens.check("builder")
    # A topic no other test searches for: this server is shared with them.
    companion = new_companion(page, "Professor Axe", "coding", "Headings and landmarks")
    page.get_by_role("button", name="Bookmark Professor Axe").click()
    expect(page.get_by_role("button", name="Bookmark Professor Axe")).to_have_attribute("aria-pressed", "true")
    screens.check("companion page, bookmarked")
    page.goto(f"/companions/{companion}/edit")
    expect(page.get_by_role("button", name="Save changes")).to_be_visible()
    screens.check("builder, editing")
    page.goto("/companions")
    expect(page.locator(".companion-card").first).to_be_visible()
    screens.check("library")
    page.goto("/companions?q=nothing-matches-this")
    expect(page.get_by_text("No companions match")).to_be_visible()
    screens.check("library, no results")
    page.goto("/")
    expect(page.get_by_role("heading", name="Popular companions")).to_be_visible()
    screens.check("home")
    page.goto("/journey")
    expect(page.get_by_role("heading", name="My bookmarks")).to_be_visible()
    screens.check("journey")
    page.goto("/plans")
    expect(page.locator(".plan--current")).to_be_visible()
    screens.check("plans")
    page.goto("/account")
    expect(page.get_by_role("heading", name="Where you're signed in")).to_be_visible()
    screens.check("account")
    page.goto("/nowhere")
    expect(page.get_by_role("heading", level=1)).to_have_text("We couldn't find that page")
    screens.check("not found")
    screens.assert_clean()


def _lesson_screens(page: Page, screens: Screens, label: str) -> None:
    companion = new_companion(page, f"Tutor {label}", "economics", "Opportunity cost")
    page.get_by_role("button", name="Start lesson").click()
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
    expect(page.get_by_role("log").locator(".bubble--user")).to_contain_text("A hosted question")
    screens.check(f"lesson running, {label}")
    page.get_by_role("button", name="End lesson").click()
    expect(page.locator(".lesson-end").get_by_role("heading")).to_have_text("Lesson ended")
    screens.check(f"lesson ended, {label}")
    lesson = page.request.get("/api/me/lessons").json()["items"][0]["id"]
    page.goto(f"/lessons/{lesson}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Lesson with Tutor {label}")
    screens.check(f"stored lesson, {label}")
    page.goto("/")
    expect(page.locator(".companion-card").first).to_be_visible()
    screens.check(f"home with a lesson, {label}")
    page.goto("/journey")
    expect(page.locator("#my-lessons-section .row-item")).to_have_count(1)
    screens.check(f"journey with a lesson, {label}")
    page.goto(f"/companions/{companion}")
    expect(page.get_by_role("button", name="Start lesson")).to_be_visible()


def test_a_lesson_running_and_ended_passes_axe_on_a_laptop_and_a_phone(
    browser: Browser, hosted_server: LiveServer
) -> None:
    with open_page(browser, hosted_server.base_url) as page:
        _stand_in(page)
        screens = Screens(page)
        sign_up(page, "Lola Laptop")
        _lesson_screens(page, screens, "laptop")
        screens.assert_clean()

    with open_page(browser, hosted_server.base_url, PHONE) as page:  # type: ignore[arg-type]
        _stand_in(page)
        screens = Screens(page)
        sign_up(page, "Pia Phone")
        screens.check("home, phone")
        _lesson_screens(page, screens, "phone")
        for path in ["/companions", "/companions/new", "/plans", "/account"]:
            page.goto(path)
            expect(page.get_by_role("heading", level=1).first).to_be_visible()
            screens.check(f"{path}, phone")
        screens.assert_clean()
