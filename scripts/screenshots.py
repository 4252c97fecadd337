"""Seed a throwaway server with companions and lessons, then save PNGs of the main screens to docs/screenshots/.

Run: .venv/bin/python scripts/screenshots.py   (needs /usr/bin/chromium; takes about two minutes)
It starts the real server on loopback with the scripted LLM, so the lesson screenshots show a real spoken lesson
(Chromium's fake microphone plays a piper-made question).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
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
    ("Professor Leaf", "science", "Photosynthesis and how plants make food", "en_US-joe-medium", "casual", 15),
    ("Count Fraction", "maths", "Adding and subtracting fractions", "en_US-joe-medium", "casual", 10),
    ("Señora Lingo", "language", "Everyday Spanish greetings", "en_US-joe-medium", "formal", 20),
    ("Captain Caesar", "history", "The rise and fall of the Roman Empire", "en_US-joe-medium", "formal", 30),
    ("Byte Buddy", "coding", "Loops and conditions in Python", "en_US-joe-medium", "casual", 15),
    ("Atlas", "geography", "Rivers and mountains of Europe", "en_US-joe-medium", "casual", 10),
    ("Penny Wise", "finance", "Saving, budgets and compound interest", "en_US-joe-medium", "formal", 15),
    ("Market Max", "economics", "Supply and demand", "en_US-joe-medium", "casual", 20),
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
                    capture_console(browser, server, out)
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
            "voice": "en_US-joe-medium",
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


def capture_console(browser: Browser, server: LiveServer, out: Path) -> None:
    """The school console: Mr Okafor's class with Maya in it, and the administrator's users and audit log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
    env["TUTOR_SERVER__DATA_DIR"] = str(server.data_dir)
    create = ["users", "create", "head@school.test", "--name", "Dr Rivera", "--password", PASSWORD, "--admin"]
    subprocess.run(
        [sys.executable, "-m", "server.cli", *create],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    admin_context = browser.new_context(base_url=server.base_url, viewport=DESKTOP)
    admin = admin_context.new_page()
    api(admin, "POST", "/api/auth/login", {"email": "head@school.test", "password": PASSWORD})
    users = api(admin, "GET", "/api/admin/users?limit=50")["users"]
    okafor = next(u for u in users if u["email"] == "okafor@school.test")
    api(admin, "PATCH", f"/api/admin/users/{okafor['id']}", {"role": "teacher"})
    for name, email in (("Sam Osei", "sam@school.test"), ("Lin Chen", "lin@school.test")):
        # Each in a context of its own: registering signs the new account in.
        api_context = browser.new_context(base_url=server.base_url)
        register(api_context.new_page(), name, email)
        api_context.close()

    teacher_context = browser.new_context(base_url=server.base_url, viewport=DESKTOP)
    teacher = teacher_context.new_page()
    api(teacher, "POST", "/api/auth/login", {"email": "okafor@school.test", "password": PASSWORD})
    klass = api(teacher, "POST", "/api/classes", {"name": "Year 7 Humanities"})
    for email in ("maya@school.test", "sam@school.test", "lin@school.test"):
        api(teacher, "POST", f"/api/classes/{klass['id']}/learners", {"email": email})
    for companion in api(teacher, "GET", "/api/me/companions?limit=50")["items"][:3]:
        api(teacher, "PUT", f"/api/classes/{klass['id']}/companions/{companion['id']}")
    teacher.goto(f"/teach/classes/{klass['id']}")
    expect(teacher.locator("#roster tbody tr")).to_have_count(3)
    shoot(teacher, out, "console-class")
    teacher.get_by_role("link", name="Lessons of Maya Patel").click()
    teacher.get_by_role("link", name=re.compile("Transcript of Maya Patel's lesson with Professor Leaf")).click()
    # Reading it puts a transcript.read entry in the audit log shot below.
    expect(teacher.locator(".transcript--stored .bubble").first).to_be_visible()
    teacher_context.close()

    sam = next(u for u in api(admin, "GET", "/api/admin/users?q=sam")["users"])
    api(admin, "PATCH", f"/api/admin/users/{sam['id']}", {"plan": "core"})
    admin.goto("/admin/users")
    expect(admin.locator("#users-table tbody tr").first).to_be_visible()
    shoot(admin, out, "console-users")
    admin.goto("/admin/audit")
    expect(admin.locator("#audit-table tbody tr").first).to_be_visible()
    shoot(admin, out, "console-audit")
    admin_context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
