"""Hosted mode: the same page drives a stand-in for the @vapi-ai/web SDK, loaded from the configured URL.

Vapi itself cannot be reached here, so a small module with the SDK's interface records what the page asked and
plays the events a hosted call sends. It also lets each way a lesson ends be shown without a real pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.live_server import LiveServer
from tests.web.conftest import build_companion, open_page, sign_up

pytestmark = pytest.mark.browser

SDK_PATH = "/test-sdk/vapi-web.js"
PUBLIC_KEY = "pk_test_0123"

STAND_IN_SDK = """
const record = (window.__vapi = window.__vapi || { constructed: [], started: [], muted: [], stopped: 0, sent: [] });
export default class Vapi {
  constructor(publicKey, apiBaseUrl) {
    record.constructed.push({ publicKey, apiBaseUrl: apiBaseUrl === undefined ? null : apiBaseUrl });
    this.listeners = {};
    this.muted = false;
  }
  on(event, fn) { (this.listeners[event] = this.listeners[event] || []).push(fn); return this; }
  once(event, fn) { const wrap = (...a) => { this.off(event, wrap); fn(...a); }; return this.on(event, wrap); }
  off(event, fn) { this.listeners[event] = (this.listeners[event] || []).filter((f) => f !== fn); return this; }
  removeAllListeners() { this.listeners = {}; return this; }
  emit(event, ...args) { for (const fn of [...(this.listeners[event] || [])]) fn(...args); }
  async start(assistant, overrides) {
    record.started.push({ assistant, overrides: overrides === undefined ? null : overrides });
    setTimeout(() => {
      this.emit("call-start");
      this.emit("speech-start");
      this.emit("volume-level", 0.8);
      this.emit("message", { type: "transcript", role: "assistant", transcriptType: "partial",
                             transcript: "Hello from" });
      this.emit("message", { type: "transcript", role: "assistant", transcriptType: "final",
                             transcript: "Hello from the hosted tutor." });
      this.emit("speech-end");
      this.emit("message", { type: "transcript", role: "user", transcriptType: "final",
                             transcript: "A hosted question" });
      const reason = window.__vapiEndReason;
      if (reason) {
        setTimeout(() => {
          this.emit("message", { type: "status-update", status: "ended", endedReason: reason });
          this.emit("call-end");
        }, 50);
      }
    }, 50);
    return { id: "call_test" };
  }
  stop() {
    record.stopped += 1;
    setTimeout(() => {
      this.emit("message", { type: "status-update", status: "ended", endedReason: "customer-ended-call" });
      this.emit("call-end");
    }, 20);
  }
  setMuted(muted) { this.muted = Boolean(muted); record.muted.push(this.muted); }
  isMuted() { return this.muted; }
  send(message) { record.sent.push(message); }
  say(message, endCallAfterSpoken) { record.sent.push({ type: "say", message, endCallAfterSpoken }); }
}
"""


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "TUTOR_VOICE__BACKEND": "vapi",
        "TUTOR_VOICE__PRELOAD": "false",
        "TUTOR_VAPI__PUBLIC_KEY": PUBLIC_KEY,
        "TUTOR_VAPI__SDK_URL": SDK_PATH,
    }
    with LiveServer(tmp_path_factory.mktemp("hosted-server"), env) as server:
        yield server


@pytest.fixture
def hosted_page(browser: Browser, hosted_server: LiveServer) -> Iterator[Page]:
    with open_page(browser, hosted_server.base_url) as page:
        page.route(
            f"**{SDK_PATH}",
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=STAND_IN_SDK),
        )
        yield page


def recorded(page: Page) -> dict[str, object]:
    return json.loads(page.evaluate("JSON.stringify(window.__vapi || {})"))


def test_hosted_lesson_uses_the_sdk_with_the_servers_assistant(hosted_page: Page) -> None:
    page = hosted_page
    sign_up(page, "Hana Hosted")
    companion = build_companion(page, "Cloud Tutor", "economics", "Opportunity cost", duration="10 minutes")

    page.get_by_role("button", name="Start lesson").click()
    expect(page.locator(".lesson-page")).to_have_attribute("data-phase", "live")
    transcript = page.get_by_role("log")
    expect(transcript.locator(".bubble--assistant")).to_have_text("Cloud TutorHello from the hosted tutor.")
    expect(transcript.locator(".bubble--user")).to_contain_text("A hosted question")
    level = page.evaluate("getComputedStyle(document.querySelector('.voice-orb')).getPropertyValue('--level')")
    assert float(level) > 0.1

    page.get_by_role("button", name="Mute microphone").click()
    expect(page.get_by_role("button", name="Unmute microphone")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="End lesson").click()
    expect(page.locator(".lesson-end").get_by_role("heading")).to_have_text("Lesson ended")

    calls = recorded(page)
    # The SDK got the school's public key and Vapi's own API address (no base URL of ours).
    assert calls["constructed"] == [{"publicKey": PUBLIC_KEY, "apiBaseUrl": None}]
    assert calls["muted"][-1] is True  # type: ignore[index]
    assert calls["stopped"] == 1
    started = calls["started"]
    assert isinstance(started, list) and len(started) == 1
    assistant = started[0]["assistant"]
    assert assistant["firstMessage"].endswith("talking about Opportunity cost.")
    assert assistant["maxDurationSeconds"] == 600
    lessons = page.request.get("/api/me/lessons").json()["items"]
    assert assistant["metadata"]["lessonId"] == lessons[0]["id"]
    assert lessons[0]["companion"]["id"] == companion
    # No webhook reached this server, yet the page's hang-up marked the lesson ended.
    assert lessons[0]["end_reason"] == "customer-ended-call" and lessons[0]["ended_at"] is not None
    # Only the import differs: our own WebRTC client was never loaded.
    loaded = page.evaluate("performance.getEntriesByType('resource').map((entry) => entry.name)")
    assert any(url.endswith(SDK_PATH) for url in loaded)
    assert not any(url.endswith("/vapi.js") for url in loaded)


@pytest.mark.parametrize(
    ("reason", "title", "text"),
    [
        ("exceeded-max-duration", "Time's up", "reached its 10 minutes"),
        ("assistant-ended-call", "Time's up", "your tutor said goodbye"),
        ("silence-timed-out", "Ended after a long silence", "didn't hear anything"),
        ("customer-disconnected", "Connection lost", "Check your network"),
        ("llm-unavailable", "Your tutor can't answer right now", "tell your teacher"),
        ("pipeline-error", "Something went wrong on the server", "try again"),
    ],
)
def test_each_way_a_lesson_ends_has_its_own_message(hosted_page: Page, reason: str, title: str, text: str) -> None:
    page = hosted_page
    sign_up(page, "Eddie Ends")
    build_companion(page, "Ender", "business", "Pitching an idea", duration="10 minutes")
    page.evaluate(f"window.__vapiEndReason = {json.dumps(reason)}")

    page.get_by_role("button", name="Start lesson").click()
    outcome = page.locator(".lesson-end")
    expect(outcome.get_by_role("heading")).to_have_text(title)
    expect(outcome).to_contain_text(text)
    expect(outcome).to_have_attribute("data-reason", reason)
    # The transcript so far stays readable, and another lesson can start from here.
    expect(page.get_by_role("log").locator(".bubble--user")).to_contain_text("A hosted question")
    expect(outcome.get_by_role("button", name="Start another lesson")).to_be_visible()
    expect(outcome.get_by_role("link", name="Read the transcript")).to_be_visible()
