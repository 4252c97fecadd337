"""Seed a throwaway server with companions and lessons, then save PNGs of the main screens to docs/screenshots/.

Run: .venv/bin/python scripts/screenshots.py   (needs /usr/bin/chromium; takes about two minutes)
It starts the real server on loopback with the scripted LLM, so the lesson screenshots show a real spoken lesson
(Chromium's fake microphone plays a piper-made question).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright  # noqa: E402

from harness.browser import CHROMIUM, chromium_args  # noqa: E402
from harness.live_server import LiveServer  # noqa: E402
from harness.scripted_llm import MODEL_ID, ScriptedLLM  # noqa: E402
from harness.speech import synthesize, write_wav  # noqa: E402

PASSWORD = "correct horse battery"
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
QUESTION = "How do plants make their food?"
REPLY = (
    "Great question! Plants make food by photosynthesis. Their leaves catch sunlight and use it to turn "
    "water and carbon dioxide into sugar. Can you guess which part of the leaf does that?"
)

COMPANIONS = [
    ("Professor Leaf", "science", "Photosynthesis and how plants make food", "female", "casual", 15),
    ("Count Fraction", "maths", "Adding and subtracting fractions", "male", "casual", 10),
    ("Señora Lingo", "language", "Everyday Spanish greetings", "female", "formal", 20),
    ("Captain Caesar", "history", "The rise and fall of the Roman Empire", "male", "formal", 30),
    ("Byte Buddy", "coding", "Loops and conditions in Python", "male", "casual", 15),
    ("Atlas", "geography", "Rivers and mountains of Europe", "female", "casual", 10),
    ("Penny Wise", "finance", "Saving, budgets and compound interest", "female", "formal", 15),
    ("Market Max", "economics", "Supply and demand", "male", "casual", 20),
]


def api(page: Page, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = page.request.fetch(path, method=method, data=body)
    if not response.ok:
        raise RuntimeError(f"{method} {path}: {response.status} {response.text()}")
    return response.json() if response.status != 204 else None


def register(page: Page, name: str, email: str) -> None:
    api(page, "POST", "/api/auth/register", {"name": name, "email": email, "password": PASSWORD})


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    # Let toasts fade and focus rings settle so screenshots show the resting screen.
    page.wait_for_timeout(400)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("document.getElementById('toasts').replaceChildren()")


def shoot(page: Page, out: Path, name: str, full_page: bool = True) -> None:
    settle(page)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def seed(browser: Browser, base_url: str) -> None:
    """A second author's companions, so the library is not all the learner's own."""
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    register(page, "Mr Okafor", "okafor@school.test")
    for name, subject, topic, voice, style, duration in COMPANIONS[3:]:
        api(
            page,
            "POST",
            "/api/companions",
            {"name": name, "subject": subject, "topic": topic, "voice": voice, "style": style, "duration": duration},
        )
    context.close()


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tutor-shots-") as tmp:
        tmp_path = Path(tmp)
        wav = tmp_path / "question.wav"
        write_wav(wav, synthesize(QUESTION, 16000, leading_silence=10.0, trailing_silence=60.0), 16000)
        with ScriptedLLM([REPLY]) as llm:
            env = {
                "TUTOR_VOICE__LLM__BASE_URL": llm.base_url,
                "TUTOR_VOICE__LLM__MODEL": MODEL_ID,
                "TUTOR_PLANS__FREE__COMPANIONS": "6",
            }
            with LiveServer(tmp_path / "server", env) as server, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
                try:
                    capture(browser, server.base_url, out)
                finally:
                    browser.close()


def capture(browser: Browser, base_url: str, out: Path) -> None:
    seed(browser, base_url)
    context = browser.new_context(base_url=base_url, viewport=DESKTOP)
    page = context.new_page()

    page.goto("/")
    shoot(page, out, "welcome")
    page.goto("/signin")
    shoot(page, out, "sign-in")

    register(page, "Maya Patel", "maya@school.test")
    ids = []
    for name, subject, topic, voice, style, duration in COMPANIONS[:3]:
        body = {"name": name, "subject": subject, "topic": topic, "voice": voice, "style": style, "duration": duration}
        ids.append(api(page, "POST", "/api/companions", body)["id"])
    others = api(page, "GET", "/api/companions?limit=50")["items"]
    for companion in others:
        if companion["name"] in ("Captain Caesar", "Penny Wise"):
            api(page, "PUT", f"/api/companions/{companion['id']}/bookmark")
        if companion["name"] in ("Captain Caesar", "Byte Buddy", "Atlas"):
            # Short finished lessons make the home page's "recently completed" list and the journey real.
            lesson = api(page, "POST", f"/api/companions/{companion['id']}/lessons")
            api(page, "POST", f"/api/lessons/{lesson['id']}/end")

    # A real spoken lesson with Professor Leaf.
    page.goto(f"/companions/{ids[0]}")
    shoot(page, out, "lesson-ready")
    page.get_by_role("button", name="Start lesson").click()
    tutor = page.locator(".bubble--assistant", has_text="which part of the leaf")
    expect(tutor).to_have_count(1, timeout=120_000)
    shoot(page, out, "lesson-live")
    page.get_by_role("button", name="End lesson").click()
    expect(page.locator(".lesson-end")).to_be_visible(timeout=30_000)
    shoot(page, out, "lesson-ended")
    page.get_by_role("link", name="Read the transcript").click()
    expect(page).to_have_url(re.compile(r"/lessons/\d+$"))
    shoot(page, out, "lesson-transcript")

    page.goto("/")
    expect(page.locator(".companion-card").first).to_be_visible()
    shoot(page, out, "home")
    page.goto("/companions")
    expect(page.locator(".companion-card").first).to_be_visible()
    shoot(page, out, "library")
    page.goto("/companions?q=fraction&subject=maths")
    expect(page.locator(".companion-card")).to_have_count(1)
    shoot(page, out, "library-search")
    page.goto("/companions/new")
    page.get_by_label("Companion name").fill("Doctor Quark")
    page.get_by_role("button", name="Build your companion").click()
    expect(page.locator("#companion-topic-error")).to_be_visible()
    shoot(page, out, "builder-validation")
    page.goto("/journey")
    expect(page.locator("#my-lessons-section .row-item").first).to_be_visible()
    shoot(page, out, "journey")
    page.goto("/plans")
    shoot(page, out, "plans")

    # Fill the plan to show the builder's limit screen.
    for n in range(3):
        body = {
            "name": f"Helper {n + 1}",
            "subject": "business",
            "topic": "Pitching an idea",
            "voice": "male",
            "style": "casual",
            "duration": 5,
        }
        api(page, "POST", "/api/companions", body)
    page.goto("/companions/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("You've reached your companion limit")
    shoot(page, out, "builder-limit-reached")
    context.close()

    phone = browser.new_context(
        base_url=base_url, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = phone.new_page()
    api(page, "POST", "/api/auth/login", {"email": "maya@school.test", "password": PASSWORD})
    page.goto("/")
    expect(page.locator(".companion-card").first).to_be_visible()
    shoot(page, out, "phone-home", full_page=False)
    page.goto("/companions")
    expect(page.locator(".companion-card").first).to_be_visible()
    shoot(page, out, "phone-library", full_page=False)
    page.goto(f"/companions/{ids[1]}")
    shoot(page, out, "phone-lesson", full_page=False)
    page.goto("/journey")
    shoot(page, out, "phone-journey", full_page=False)
    phone.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
