"""The school console in a real browser: a teacher's class, a learner's lesson in it, and the administrator's view."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from harness.live_server import REPO, LiveServer
from tests.web.conftest import (
    PASSWORD,
    assert_no_axe_violations,
    build_companion,
    open_page,
    sign_up,
    unique_email,
)

pytestmark = [pytest.mark.browser, pytest.mark.voice]

LESSON_TIMEOUT_MS = 90_000
HEARD = re.compile(r"plants? make (their|the) food", re.I)
# The tutor's scripted reply gives out a phone number: the screening replaces it before it is spoken and flags it,
# so the teacher has a real flag to read (personal data, medium severity).
FLAGGED_REPLY = "Good question! Call me on 0412 345 678 after school and I will tell you all about it."
FLAGGED_PHONE = "0412 345 678"


def tutor_cli(server: LiveServer, *args: str) -> str:
    """`tutor ...` against the live server's own database, as an operator would run it on that machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
    env["TUTOR_SERVER__DATA_DIR"] = str(server.data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"tutor {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server with speech models and a scripted tutor whose answer gets flagged; an administrator exists."""
    from harness.scripted_llm import MODEL_ID, ScriptedLLM

    with ScriptedLLM([FLAGGED_REPLY]) as llm:
        env = {
            "TUTOR_VOICE__LLM__BASE_URL": llm.base_url,
            "TUTOR_VOICE__LLM__MODEL": MODEL_ID,
            "TUTOR_VOICE__LLM__TIMEOUT_SECS": "10",
            "TUTOR_VOICE__SILENCE_TIMEOUT_SECS": "60",
            "TUTOR_VOICE__SILENCE_WARNING_SECS": "10",
            # The scripted server answers every request with the tutor's reply, so it cannot be the classifier.
            "TUTOR_SAFETY__CLASSIFIER": "off",
        }
        with LiveServer(tmp_path_factory.mktemp("console-server"), env) as server:
            admin = ["ada@school.test", "--name", "Ada Admin", "--password", PASSWORD, "--admin"]
            tutor_cli(server, "users", "create", *admin)
            yield server


def sign_in(page: Page, email: str) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def accept_dialogs(page: Page) -> list[str]:
    """Say yes to every confirm() and keep what each asked."""
    asked: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    return asked


def in_main_alert(page: Page) -> Locator:
    """The screen's own error message (the page's shared screen-reader alert region sits outside <main>)."""
    return page.locator("#main").get_by_role("alert")


def user_row(page: Page, email: str) -> Locator:
    return page.locator("#users-table tbody tr", has_text=email)


def test_a_teacher_runs_a_class_and_an_administrator_oversees_it(
    browser: Browser, voice_browser: Browser, console_server: LiveServer
) -> None:
    base = console_server.base_url
    teacher_email = unique_email("teacher")
    learner_email = unique_email("learner")
    with (
        open_page(browser, base) as admin,
        open_page(browser, base) as teacher,
        open_page(voice_browser, base, {"width": 1280, "height": 1000}) as learner,
    ):
        admin_asked = accept_dialogs(admin)
        teacher_asked = accept_dialogs(teacher)

        # Two people sign up; the administrator (made with `tutor users create --admin`) makes one a teacher.
        sign_up(teacher, "Tess Teacher", teacher_email)
        sign_up(learner, "Lena Learner", learner_email)
        expect(teacher.get_by_role("navigation", name="Main").get_by_role("link", name="Classes")).to_have_count(0)
        sign_in(admin, "ada@school.test")
        nav = admin.get_by_role("navigation", name="Main")
        nav.get_by_role("link", name="Admin").click()
        expect(admin.get_by_role("heading", level=1)).to_have_text("School overview")
        expect(admin.locator("#status .status-item").first).to_be_visible()
        assert_no_axe_violations(admin, "the administrator's overview")
        admin.get_by_role("navigation", name="Administration").get_by_role("link", name="Users").click()
        admin.get_by_label("Search by name or e-mail").fill("tess")
        admin.get_by_role("button", name="Search").click()
        expect(admin.locator("#users-table tbody tr")).to_have_count(1)
        admin.get_by_label("Role of Tess Teacher").select_option("teacher")
        expect(admin.locator("#toasts")).to_contain_text("Tess Teacher is now a teacher.")

        # The teacher's page shows the console once it next loads; they create a class.
        teacher.reload()
        teacher.get_by_role("navigation", name="Main").get_by_role("link", name="Classes").click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Your classes")
        assert_no_axe_violations(teacher, "the teacher's classes")
        teacher.get_by_label("Class name").fill("Year 7 Science")
        teacher.get_by_role("button", name="Create class").click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Year 7 Science")
        code = teacher.locator("#join-code").inner_text().strip()
        assert re.fullmatch(r"[A-Z0-9]{6}", code), code
        # The class gets a companion the teacher builds and assigns; it comes first in the learner's library.
        class_url = teacher.url
        leaf = build_companion(teacher, "Professor Leaf", "science", "Photosynthesis", duration="5 minutes")
        teacher.goto(class_url)
        teacher.get_by_label("Assign a companion").select_option(str(leaf))
        teacher.get_by_role("button", name="Assign", exact=True).click()
        expect(teacher.locator("#class-companions")).to_contain_text("Professor Leaf")
        assert_no_axe_violations(teacher, "the teacher's class page")

        # The learner joins with the code on the teacher's page; a wrong code is refused in words.
        learner.goto("/join")
        learner.get_by_label("Class code").fill("ZZZZZZ")
        learner.get_by_role("button", name="Join class").click()
        expect(in_main_alert(learner)).to_contain_text("We don't know the code")
        assert_no_axe_violations(learner, "the join page with an unknown code")
        learner.get_by_label("Class code").fill(code.lower())
        learner.get_by_role("button", name="Join class").click()
        expect(learner.locator("#my-classes")).to_contain_text("Year 7 Science")
        expect(learner.locator("#my-classes")).to_contain_text("Tess Teacher")
        learner.get_by_label("Class code").fill(code)
        learner.get_by_role("button", name="Join class").click()
        expect(in_main_alert(learner)).to_contain_text("already in that class")
        learner.get_by_role("navigation", name="Main").get_by_role("link", name="Companions").click()
        from_class = learner.locator(".class-companions")
        expect(from_class.get_by_role("heading", name="From your class")).to_be_visible()
        expect(from_class.locator(".companion-card")).to_have_count(1)
        expect(from_class).to_contain_text("Professor Leaf")
        assert_no_axe_violations(learner, "the library with the class's companions")

        # A short spoken lesson: the fake microphone asks, the tutor's flagged answer is replaced.
        from_class.get_by_role("link", name="Launch lesson").click()
        learner.get_by_role("button", name="Start lesson").click()
        lesson = learner.locator(".lesson-page")
        expect(lesson).to_have_attribute("data-phase", "live", timeout=LESSON_TIMEOUT_MS)
        log = learner.get_by_role("log")
        expect(log.locator(".bubble--user").first).to_contain_text(HEARD, timeout=LESSON_TIMEOUT_MS)
        expect(log.locator(".bubble--assistant")).to_have_count(2, timeout=LESSON_TIMEOUT_MS)
        expect(log).not_to_contain_text(FLAGGED_PHONE)
        learner.get_by_role("button", name="End lesson").click()
        expect(learner.locator(".lesson-end")).to_be_visible(timeout=30_000)

        # The teacher sees the lesson in the roster, reads its transcript and the raised flag.
        teacher.goto(class_url)
        row = teacher.locator("#roster tbody tr", has_text="Lena Learner")
        expect(row.locator("[data-col=lessons]")).to_have_text("1")
        expect(row).to_contain_text("Professor Leaf")
        expect(row).to_contain_text(learner_email)
        flags = teacher.locator("#class-flags")
        expect(flags).to_contain_text(FLAGGED_PHONE)
        expect(flags).to_contain_text("Personal data")
        expect(flags).to_contain_text("Lena Learner")
        assert_no_axe_violations(teacher, "the class page with a lesson and a flag")
        teacher.get_by_role("link", name="Lessons of Lena Learner").click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Lena Learner's lessons")
        teacher.get_by_role("link", name=re.compile("Transcript of Lena Learner's lesson with Professor Leaf")).click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Lena Learner's lesson with Professor Leaf")
        stored = teacher.locator(".transcript--stored")
        expect(stored.locator(".bubble--user").first).to_contain_text(HEARD)
        expect(stored.locator(".bubble--user").first).to_contain_text("Lena Learner")
        expect(stored.locator(".bubble--assistant").first).to_contain_text("talking about Photosynthesis")
        expect(teacher.locator(".audit-note")).to_contain_text("audit log")
        assert_no_axe_violations(teacher, "a learner's transcript, read by their teacher")

        # The administrator moves the learner to another plan and disables the account.
        admin.goto("/admin/users?q=lena")
        lena = user_row(admin, learner_email)
        admin.get_by_label("Plan of Lena Learner").select_option("pro")
        expect(admin.locator("#toasts")).to_contain_text("Lena Learner is now on the Pro plan.")
        assert_no_axe_violations(admin, "the administrator's users")
        admin.get_by_role("button", name="Disable Lena Learner").click()
        expect(lena.locator(".user-state")).to_have_text("Disabled")
        assert any("signed out everywhere" in text for text in admin_asked), admin_asked
        expect(admin.get_by_role("button", name="Enable Lena Learner")).to_be_focused()

        # The learner's open page is signed out on its next request.
        learner.get_by_role("navigation", name="Main").get_by_role("link", name="Companions").click()
        expect(learner).to_have_url(re.compile(r"/signin\?next="))
        expect(learner.locator("#toasts")).to_contain_text("Your session ended")
        learner.get_by_label("Email").fill(learner_email)
        learner.get_by_label("Password").fill(PASSWORD)
        learner.get_by_role("button", name="Sign in").click()
        expect(in_main_alert(learner)).to_be_visible()
        expect(learner).to_have_url(re.compile(r"/signin"))

        # The audit log says who read which transcript, and what the administrator changed.
        admin.get_by_role("navigation", name="Administration").get_by_role("link", name="Audit log").click()
        expect(admin.get_by_role("heading", level=1)).to_have_text("Audit log")
        read = admin.locator("#audit-table tbody tr[data-action='transcript.read']")
        expect(read).to_have_count(1)
        expect(read).to_contain_text(teacher_email)
        expect(admin.locator("#audit-table")).to_contain_text("ada@school.test")
        assert admin.locator("#audit-table tbody tr").count() >= 3  # the read, the plan, the disabling
        assert_no_axe_violations(admin, "the audit log")

        # The safety and settings screens read as they should too.
        admin.get_by_role("navigation", name="Administration").get_by_role("link", name="Safety").click()
        expect(admin.locator("#admin-flags")).to_contain_text(FLAGGED_PHONE)
        assert_no_axe_violations(admin, "the administrator's safety flags")
        admin.get_by_role("navigation", name="Administration").get_by_role("link", name="Settings").click()
        expect(admin.get_by_label(re.compile("registration open"))).to_be_visible()
        assert_no_axe_violations(admin, "the school settings")

        # Deleting the class asks first, and says the learner's lessons stay theirs.
        teacher.goto(class_url)
        teacher.get_by_role("button", name="Delete class").click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Your classes")
        assert any("stay theirs" in text for text in teacher_asked), teacher_asked
        expect(teacher.locator("#main")).not_to_contain_text("Year 7 Science")


def test_a_teacher_manages_the_roster_and_an_administrator_exports_and_deletes_a_learner(
    browser: Browser, console_server: LiveServer
) -> None:
    base = console_server.base_url
    teacher_email = unique_email("teacher")
    learner_email = unique_email("learner")
    with open_page(browser, base) as admin, open_page(browser, base) as teacher, open_page(browser, base) as learner:
        admin_asked = accept_dialogs(admin)
        teacher_asked = accept_dialogs(teacher)
        learner_asked = accept_dialogs(learner)
        sign_up(teacher, "Theo Teacher", teacher_email)
        sign_up(learner, "Liam Learner", learner_email)
        sign_in(admin, "ada@school.test")
        admin.goto(f"/admin/users?q={teacher_email}")
        admin.get_by_label("Role of Theo Teacher").select_option("teacher")
        expect(admin.locator("#toasts")).to_contain_text("Theo Teacher is now a teacher.")

        teacher.goto("/teach")
        teacher.get_by_label("Class name").fill("Year 8 History")
        teacher.get_by_role("button", name="Create class").click()
        expect(teacher.get_by_role("heading", level=1)).to_have_text("Year 8 History")
        old_code = teacher.locator("#join-code").inner_text().strip()

        # Adding by e-mail says in words why an address cannot join.
        email_box = teacher.get_by_label("Add a learner by e-mail")
        add = teacher.get_by_role("button", name="Add learner")
        email_box.fill("nobody@school.test")
        add.click()
        expect(in_main_alert(teacher)).to_contain_text("No learner has the e-mail address nobody@school.test")
        email_box.fill("ada@school.test")
        add.click()
        expect(in_main_alert(teacher)).to_contain_text("only learners join classes")
        email_box.fill(learner_email)
        add.click()
        expect(teacher.locator("#roster tbody tr", has_text="Liam Learner")).to_have_count(1)

        # A new code replaces the old one: the old one no longer works.
        teacher.get_by_role("button", name="New code").click()
        expect(teacher.locator("#join-code")).not_to_have_text(old_code)
        assert any("stops working" in text for text in teacher_asked), teacher_asked
        learner.goto(f"/join?code={old_code}")
        expect(learner.get_by_label("Class code")).to_have_value(old_code)
        learner.get_by_role("button", name="Join class").click()
        expect(in_main_alert(learner)).to_contain_text("We don't know the code")
        # The learner the teacher added sees the class, and can leave it.
        classes = learner.locator("#my-classes")
        expect(classes).to_contain_text("Year 8 History")
        expect(classes).to_contain_text("Theo Teacher")
        learner.get_by_role("button", name="Leave Year 8 History").click()
        expect(learner.locator("#main")).to_contain_text("You're not in a class yet")
        assert any("Your lessons stay yours" in text for text in learner_asked), learner_asked
        learner.goto("/companions")
        expect(learner.get_by_role("link", name="Join your class")).to_be_visible()

        # The teacher adds them back, then removes them from the roster.
        teacher.reload()
        expect(teacher.locator("#main")).to_contain_text("No learners yet")
        teacher.get_by_label("Add a learner by e-mail").fill(learner_email)
        teacher.get_by_role("button", name="Add learner").click()
        teacher.get_by_role("button", name="Remove Liam Learner from the class").click()
        expect(teacher.locator("#main")).to_contain_text("No learners yet")

        # The administrator downloads the learner's data, then deletes the account.
        admin.goto(f"/admin/users?q={learner_email}")
        with admin.expect_download() as download_info:
            admin.get_by_role("button", name="Export the data of Liam Learner").click()
        download = download_info.value
        assert download.suggested_filename.endswith(".json")
        assert learner_email in open(download.path(), encoding="utf-8").read()
        admin.get_by_role("button", name="Delete Liam Learner").click()
        expect(user_row(admin, learner_email)).to_have_count(0)
        assert any("cannot be undone" in text for text in admin_asked), admin_asked
        admin.reload()
        expect(admin.locator("#main")).to_contain_text("No users match")
        # An administrator cannot take away their own role or account from the console.
        admin.goto("/admin/users?q=ada@school.test")
        expect(admin.get_by_label("Role of Ada Admin")).to_be_disabled()
        expect(admin.get_by_role("button", name="Delete Ada Admin")).to_be_disabled()
