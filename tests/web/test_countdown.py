"""The lesson page counts down the time the server gives the lesson, not the companion's nominal length."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.live_server import LiveServer
from tests.web.conftest import build_companion, open_page, sign_up
from tests.web.test_hosted import PUBLIC_KEY, SDK_PATH, STAND_IN_SDK

pytestmark = pytest.mark.browser

CAP_SECS = 90


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Hosted mode (the stand-in SDK plays the call, no pipeline needed) with every lesson capped at 90 s."""
    env = {
        "TUTOR_VOICE__BACKEND": "vapi",
        "TUTOR_VOICE__PRELOAD": "false",
        "TUTOR_VOICE__MAX_LESSON_SECS": str(CAP_SECS),
        "TUTOR_VAPI__PUBLIC_KEY": PUBLIC_KEY,
        "TUTOR_VAPI__SDK_URL": SDK_PATH,
    }
    with LiveServer(tmp_path_factory.mktemp("capped-server"), env) as server:
        yield server


@pytest.fixture
def capped_page(browser: Browser, capped_server: LiveServer) -> Iterator[Page]:
    with open_page(browser, capped_server.base_url) as page:
        page.route(
            f"**{SDK_PATH}",
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=STAND_IN_SDK),
        )
        yield page


def test_a_capped_lesson_counts_down_from_the_cap(capped_page: Page) -> None:
    page = capped_page
    sign_up(page, "Cleo Capped")
    build_companion(page, "Short Tutor", "economics", "Opportunity cost", duration="10 minutes")

    page.get_by_role("button", name="Start lesson").click()
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
    # 01:30 or a second or two below it: the server's 90 s, not the companion's 10:00.
    expect(page.get_by_role("timer")).to_have_text(re.compile(r"^01:(2\d|30)$"))
