"""The learner page in a real browser against the real server: accounts, builder, library, bookmarks, limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from harness.live_server import REPO, LiveServer
from tests.web.conftest import PASSWORD, build_companion, sign_up, unique_email

pytestmark = pytest.mark.browser

# Chromium logs every blocked load or inline script to the console; the event also catches what it only reports.
CSP_REPORTER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective);
  console.error(`Content Security Policy violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


def watch_csp(page: Page) -> list[str]:
    """Collect the Content-Security-Policy violations the page reports from now on."""
    violations: list[str] = []
    page.add_init_script(CSP_REPORTER)
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return violations


def test_builder_shows_the_servers_validation_messages_inline(page: Page) -> None:
    sign_up(page, "Vera Valid")
    page.goto("/companions/new")
    page.get_by_label("Companion name").fill("   ")
    page.get_by_role("button", name="Build your companion").click()

    name = page.get_by_label("Companion name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    # The message sits next to its field and is tied to it for screen readers.
    name_error = page.locator("#companion-name-error")
    expect(name_error).to_have_text("This is required.")
    expect(name).to_have_attribute("aria-describedby", re.compile("companion-name-error"))
    expect(page.locator("#companion-topic-error")).to_have_text("This is required.")
    expect(page.locator("#companion-subject-error")).to_have_text("Choose one of the options.")
    expect(page.locator(".form-alert-slot .alert")).to_contain_text("Please fix the 3 highlighted fields")

    # Fixing the fields clears the messages and builds the companion.
    name.fill("Ada Lovelace")
    page.get_by_label("Subject").select_option("coding")
    page.get_by_label("What should the companion teach?").fill("Loops in Python")
    page.get_by_role("button", name="Build your companion").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.get_by_text("Loops in Python")).to_be_visible()

    # The author can edit it with the same form; the same inline messages apply.
    page.get_by_role("link", name="Edit").click()
    topic = page.get_by_label("What should the companion teach?")
    expect(topic).to_have_value("Loops in Python")
    topic.fill("")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#companion-topic-error")).to_have_text("This is required.")
    topic.fill("Functions in Python")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".lesson-head__topic")).to_have_text("Functions in Python")


def test_learner_builds_finds_and_bookmarks_companions_until_the_plan_is_full(page: Page) -> None:
    sign_up(page, "Ann Learner")
    photon = build_companion(page, "Professor Photon", "science", "Photosynthesis in green plants")
    build_companion(page, "Count Fraction", "maths", "Adding fractions", duration="10 minutes")

    # Search by topic: only the matching companion shows, and the search is in the URL.
    page.goto("/companions")
    page.get_by_label("Search by topic or name").fill("photosynth")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/companions\?q=photosynth$"))
    cards = page.locator(".companion-card")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Professor Photon")
    expect(page.get_by_role("status").filter(has_text="found")).to_contain_text("1 companion found")

    # Search by name works too.
    page.get_by_label("Search by topic or name").fill("count frac")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Count Fraction")

    # Subject filter, then the back button restores the previous search.
    page.get_by_label("Search by topic or name").fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_label("Subject").select_option("maths")
    expect(page).to_have_url(re.compile(r"subject=maths"))
    expect(page.locator(".companion-card", has_text="Count Fraction")).to_be_visible()
    expect(page.locator(".companion-card", has_text="Professor Photon")).to_have_count(0)
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"subject="))
    expect(page.locator(".companion-card", has_text="Professor Photon")).to_be_visible()
    page.go_back()
    expect(page.get_by_label("Search by topic or name")).to_have_value("count frac")
    expect(cards).to_have_count(1)

    # A shared link opens the same search.
    page.goto("/companions?subject=science&q=photo")
    expect(page.get_by_label("Search by topic or name")).to_have_value("photo")
    expect(page.get_by_label("Subject")).to_have_value("science")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Professor Photon")

    # Bookmark it from its card; the toggle state survives a reload and shows in my journey.
    bookmark = page.get_by_role("button", name="Bookmark Professor Photon")
    expect(bookmark).to_have_attribute("aria-pressed", "false")
    bookmark.click()
    expect(bookmark).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.get_by_role("button", name="Bookmark Professor Photon")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My journey").click()
    bookmarks = page.locator("section", has=page.get_by_role("heading", name="My bookmarks"))
    expect(bookmarks.locator(".companion-card")).to_have_count(1)
    expect(bookmarks).to_contain_text("Professor Photon")
    expect(page.locator(".stat", has_text="Companions built")).to_contain_text("2")

    # The free plan here allows two companions: the builder says so and points to the plans.
    page.goto("/companions/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("You've reached your companion limit")
    expect(page.get_by_role("button", name="Build your companion")).to_have_count(0)
    page.get_by_role("link", name="See plans").click()
    expect(page).to_have_url(re.compile(r"/plans$"))
    current = page.locator(".plan--current")
    expect(current).to_contain_text("Your plan")
    expect(current.get_by_role("heading")).to_have_text("Free")
    expect(page.locator(".usage")).to_contain_text("2 of 2 used")

    # Its lesson page has the companion's header.
    page.goto(f"/companions/{photon}")
    expect(page.locator(".lesson-head")).to_contain_text("Science")
    expect(page.locator(".lesson-head")).to_contain_text("Photosynthesis in green plants")
    expect(page.locator(".lesson-head")).to_contain_text("15 min lesson")
    expect(page.get_by_role("timer")).to_have_text("15:00")


def test_start_lesson_when_the_lesson_limit_is_used_up_says_so(page: Page) -> None:
    sign_up(page, "Lee Limit")
    companion = build_companion(page, "Captain History", "history", "The Roman Empire")
    # The free plan here has one lesson; use it up (as another tab would) before pressing start.
    response = page.request.post(f"/api/companions/{companion}/lessons")
    assert response.status == 201, response.text()

    page.reload()
    page.get_by_role("button", name="Start lesson").click()
    outcome = page.locator(".lesson-end")
    expect(outcome.get_by_role("heading")).to_have_text("You've reached your plan's lesson limit")
    expect(outcome).to_contain_text("lesson")
    expect(outcome.get_by_role("link", name="See plans")).to_have_attribute("href", "/plans")
    expect(page.get_by_role("button", name="End lesson")).to_be_hidden()


def test_sign_in_sign_out_and_return_to_the_page_asked_for(page: Page) -> None:
    email = sign_up(page, "Sam Return")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()

    # A signed-out visit to a private page asks to sign in, then goes there.
    page.goto("/journey")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fjourney$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-alert-slot .alert")).to_contain_text(re.compile("password", re.I))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/journey$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sam Return")
    expect(page.get_by_text(email)).to_be_visible()


def test_phone_sized_screen_has_a_tab_bar_and_no_sideways_scrolling(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, "Pat Phone", unique_email("phone"))
    companion = build_companion(page, "Geo Genie", "geography", "Rivers and mountains of Europe")
    # The lesson controls fit the screen.
    for name in ("Start lesson", "Mute microphone"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{name} is cut off: {box}"
    for path in ["/", "/companions", f"/companions/{companion}", "/companions/new", "/journey", "/plans"]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1).first).to_be_visible()
        nav = page.get_by_role("navigation", name="Main")
        box = nav.bounding_box()
        assert box is not None and box["y"] + box["height"] >= 844 - 2, f"{path}: tab bar not at the bottom"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path}: the page scrolls sideways by {overflow}px"


def test_keyboard_only_learner_can_reach_the_library_and_bookmark(page: Page) -> None:
    sign_up(page, "Kay Keys")
    build_companion(page, "Lingo", "language", "Spanish greetings")
    page.goto("/")
    # Once the screen has loaded, the first Tab still reaches the skip link: loading moves no focus.
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Kay")
    expect(page.locator("#main")).not_to_have_attribute("aria-busy", "true")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    # It jumps past the header to the screen's content and leaves the screen as it is.
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Kay")

    # Following a link moves focus to the new screen's heading so screen readers announce it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Companions").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/companions$"))
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    page.get_by_label("Search by topic or name").focus()
    page.keyboard.type("spanish")
    page.keyboard.press("Enter")
    expect(page.locator(".companion-card")).to_have_count(1)
    bookmark = page.get_by_role("button", name="Bookmark Lingo")
    bookmark.focus()
    page.keyboard.press("Enter")
    expect(bookmark).to_have_attribute("aria-pressed", "true")


def test_every_screen_works_under_the_content_security_policy(page: Page) -> None:
    violations = watch_csp(page)
    response = page.goto("/signup")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["permissions-policy"] == "microphone=(self), camera=(), geolocation=()"

    sign_up(page, "Cora Policy")
    companion = build_companion(page, "Professor Policy", "coding", "Safe web pages")
    page.get_by_role("button", name="Bookmark Professor Policy").click()
    expect(page.get_by_role("button", name="Bookmark Professor Policy")).to_have_attribute("aria-pressed", "true")
    for path in ["/", "/companions", f"/companions/{companion}", f"/companions/{companion}/edit", "/journey", "/plans"]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1).first).to_be_visible()
    # The lesson's voice client is imported on demand; it loads under the policy too.
    assert page.evaluate("import('/vapi.js').then((module) => typeof module.default)") == "function"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()

    # The API docs page has its own policy, which lets its one inline script draw the operations.
    page.goto("/docs")
    expect(page.get_by_role("heading", name="/api/companions", exact=True)).to_be_visible()
    assert violations == []

    # And the policy bites: a script injected into the page does not run, and the watcher hears of it.
    page.goto("/")
    page.evaluate(
        "document.head.append(Object.assign(document.createElement('script'), {textContent: 'window.x = 1'}))"
    )
    # Polled by evaluate: wait_for_function would itself need eval(), which the policy refuses.
    page.evaluate(
        """() => new Promise((resolve, reject) => {
          const until = Date.now() + 10000;
          const check = () => window.__cspViolations.length ? resolve()
            : Date.now() > until ? reject(new Error("no violation reported")) : setTimeout(check, 20);
          check();
        })"""
    )
    assert page.evaluate("window.x === undefined")
    assert page.evaluate("window.__cspViolations")[0].startswith("script-src")


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"TUTOR_VOICE__BACKEND": "vapi", "TUTOR_VOICE__PRELOAD": "false", "TUTOR_VAPI__PUBLIC_KEY": "pk_test"}
    with LiveServer(tmp_path_factory.mktemp("hosted-csp"), env) as server:
        yield server


def test_the_real_vapi_sdk_loads_dailys_call_machine_under_the_hosted_policy(
    browser: Browser, hosted_server: LiveServer
) -> None:
    if not (REPO / "web" / "vendor" / "vapi-web.js").is_file():
        pytest.skip("web/vendor/vapi-web.js is not built (scripts/build-vendor.sh; test_vendor_sdk.py builds it)")
    # Vapi and Daily cannot be reached here: their first answers are stood in for, on their real addresses, so
    # the policy is checked against the SDK's own requests. The stand-in call machine only says it ran.
    context = browser.new_context(base_url=hosted_server.base_url)
    page = context.new_page()
    try:
        violations = watch_csp(page)
        cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "*"}

        def vapi_api(route: Route) -> None:
            call = {"id": "call_test", "webCallUrl": "https://vapi.daily.co/room"}
            route.fulfill(status=201, content_type="application/json", headers=cors, body=json.dumps(call))

        page.route("https://api.vapi.ai/**", vapi_api)
        page.route(
            "https://c.daily.co/**",
            lambda route: route.fulfill(content_type="text/javascript", headers=cors, body="window.__machine = 1;"),
        )
        loads: list[str] = []
        page.on("request", lambda request: loads.append(f"{request.resource_type} {request.url}"))

        sign_up(page, "Hana Policy")
        build_companion(page, "Cloud Policy", "economics", "Opportunity cost", duration="10 minutes")
        page.get_by_role("button", name="Start lesson").click()
        page.evaluate(
            """() => new Promise((resolve, reject) => {
              const until = Date.now() + 20000;
              const check = () => window.__machine ? resolve()
                : Date.now() > until ? reject(new Error("Daily's call machine never ran")) : setTimeout(check, 50);
              check();
            })"""
        )
        # A script tag (the page's avoidEval), not fetch + Function(), which would need 'unsafe-eval'.
        assert any(load.startswith("script https://c.daily.co/call-machine/") for load in loads), loads
        assert any(load.startswith("fetch https://api.vapi.ai/call/web") for load in loads), loads
        assert violations == []
    finally:
        context.close()
