"""Browser-test fixtures: the real server in a subprocess, Debian's Chromium through sync Playwright, a learner."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect, sync_playwright

from harness.browser import CHROMIUM, chromium_args
from harness.live_server import REPO, LiveServer

PASSWORD = "correct horse battery"
# Small plan limits so the "limit reached" screens are quick to reach.
UI_PLAN_LIMITS = {"TUTOR_PLANS__FREE__COMPANIONS": "2", "TUTOR_PLANS__FREE__LESSONS": "1"}

_emails = itertools.count(1)

expect.set_options(timeout=15_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    # Sync Playwright runs its own event loop in a thread, so these tests are plain (non-async) functions.
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server without speech models (nothing here needs a live lesson), with small free-plan limits."""
    env = {"TUTOR_VOICE__PRELOAD": "false", **UI_PLAN_LIMITS}
    with LiveServer(tmp_path_factory.mktemp("ui-server"), env) as server:
        yield server


DESKTOP: ViewportSize = {"width": 1280, "height": 900}


@contextmanager
def open_page(browser: Browser, base_url: str, viewport: ViewportSize = DESKTOP) -> Iterator[Page]:
    """A fresh browser context (its own cookies) and page; fails the test if the page threw uncaught errors."""
    context = browser.new_context(base_url=base_url, viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser, ui_server: LiveServer) -> Iterator[Page]:
    with open_page(browser, ui_server.base_url) as page:
        yield page


def unique_email(prefix: str = "learner") -> str:
    return f"{prefix}{next(_emails)}@school.test"


def sign_up(page: Page, name: str = "Ann Learner", email: str | None = None) -> str:
    """Create an account through the sign-up screen, as a learner would; returns the email."""
    email = email or unique_email()
    page.goto("/signup")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    # A brand-new learner is welcomed, not welcomed back.
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {name.split()[0]}")
    return email


def build_companion(
    page: Page, name: str, subject: str, topic: str, *, duration: str = "15 minutes", voice: str | None = None
) -> int:
    """Fill the builder and submit; returns the new companion's id from the lesson page's URL.

    `voice` is a voice's name as the builder offers it; None takes the first installed one (the bundled voice
    locally, the first of vapi.voices in hosted mode)."""
    page.goto("/companions/new")
    page.get_by_label("Companion name").fill(name)
    page.get_by_label("Subject").select_option(subject)
    page.get_by_label("What should the companion teach?").fill(topic)
    voices = page.get_by_role("group", name="Voice")
    (
        voices.get_by_role("radio").first if voice is None else voices.get_by_role("radio", name=voice, exact=True)
    ).check()
    page.get_by_label("Lesson length").select_option(label=duration)
    page.get_by_role("button", name="Build your companion").click()
    expect(page).to_have_url(re.compile(r"/companions/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    return int(page.url.rsplit("/", 1)[1])


# -- accessibility ----------------------------------------------------------------------------------------------

# Installed by `npm ci` in scripts/build-vendor.sh (`make setup`), pinned in package.json's devDependencies.
AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"

# Each violation as a plain dict: the rule, how bad, what it asks, and the elements that break it.
_RUN_AXE = """
async (exclude) => {
  const context = exclude.length ? { include: [document], exclude: exclude.map((s) => [s]) } : document;
  const results = await window.axe.run(context, { resultTypes: ["violations"] });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    url: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), html: n.html, summary: n.failureSummary })),
  }));
}
"""


@cache
def _axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS} is missing: run `make setup` (scripts/build-vendor.sh installs the npm pins)")
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(page: Page, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """What axe-core (every rule it runs by default: WCAG A/AA and best practices) finds wrong on the page now."""
    # Evaluated rather than added as a <script>: the page's Content-Security-Policy refuses inline scripts, and
    # DevTools' evaluation is outside it, so the screen is checked under its real policy.
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    violations: list[dict[str, Any]] = page.evaluate(_RUN_AXE, list(exclude))
    return violations


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['url']}>")
        for node in v["nodes"][:5]:
            lines.append(f"    at {node['target']}: {node['html'][:160]}")
            summary = " ".join(str(node["summary"] or "").split())
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(v["nodes"]) > 5:
            lines.append(f"    ...and {len(v['nodes']) - 5} more")
    return "\n".join(lines)


def assert_no_axe_violations(page: Page, context: str, *, exclude: tuple[str, ...] = ()) -> None:
    """Fail, listing each rule and element, if axe-core finds any violation on the page as it is now.

    `context` names the screen in the failure; `exclude` takes CSS selectors of parts another test owns.
    """
    # A screen still loading (or a toast on its way in) would be checked half drawn.
    expect(page.locator("#main")).not_to_have_attribute("aria-busy", "true")
    violations = axe_violations(page, exclude=exclude)
    assert not violations, (
        f"axe-core found {len(violations)} violation(s) on {context}:\n{format_violations(violations)}"
    )


# -- live lessons ---------------------------------------------------------------------------------------------

SILENCE_TIMEOUT_SECS = 24
SILENCE_WARNING_SECS = 10

# Plain words that Whisper tiny.en hears reliably through the browser's audio processing.
LEARNER_QUESTION = "How do plants make their food?"
TUTOR_REPLY = "Photosynthesis is how green plants turn sunlight, water and air into sugar."


@pytest.fixture(scope="session")
def fake_microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learner's question as a WAV for Chromium's fake microphone, made with piper now.

    The leading silence lets the tutor's greeting finish first; Chromium loops the file, so a long trailing
    silence keeps the question from being asked again during the test.
    """
    from harness.speech import synthesize, write_wav

    path = tmp_path_factory.mktemp("microphone") / "question.wav"
    pcm = synthesize(LEARNER_QUESTION, sample_rate=16000, leading_silence=10.0, trailing_silence=40.0)
    write_wav(path, pcm, 16000)
    return path


@pytest.fixture(scope="session")
def voice_browser(playwright: Playwright, fake_microphone: Path) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(fake_microphone))
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server with its speech models loaded and the scripted OpenAI-compatible LLM as the tutor's brain."""
    from harness.scripted_llm import MODEL_ID, ScriptedLLM

    with ScriptedLLM([TUTOR_REPLY]) as llm:
        env = {
            "TUTOR_VOICE__LLM__BASE_URL": llm.base_url,
            "TUTOR_VOICE__LLM__MODEL": MODEL_ID,
            "TUTOR_VOICE__LLM__TIMEOUT_SECS": "10",
            # The silence check-in comes after 14 s without a word, longer than any pause in a test that talks.
            "TUTOR_VOICE__SILENCE_TIMEOUT_SECS": str(SILENCE_TIMEOUT_SECS),
            "TUTOR_VOICE__SILENCE_WARNING_SECS": str(SILENCE_WARNING_SECS),
        }
        with LiveServer(tmp_path_factory.mktemp("voice-server"), env) as server:
            yield server


@pytest.fixture
def voice_page(voice_browser: Browser, voice_server: LiveServer) -> Iterator[Page]:
    with open_page(voice_browser, voice_server.base_url, {"width": 1280, "height": 1000}) as page:
        yield page
