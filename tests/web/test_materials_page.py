"""A companion's materials in a real browser: its author uploads, shares and deletes them (errors said in words),
other learners see only the names and what they may download, and a spoken lesson's tutor line shows its sources,
live and in the stored transcript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from harness.live_server import LiveServer
from tests.test_materials import NOTES
from tests.web.conftest import assert_no_axe_violations, build_companion, open_page, sign_up

pytestmark = pytest.mark.browser

LESSON_TIMEOUT_MS = 90_000
HEARD = re.compile(r"plants? make (their|the) food", re.I)


def materials_section(page: Page) -> Any:
    return page.get_by_role("region", name="Materials")


def upload(page: Page, path: Path) -> None:
    section = materials_section(page)
    section.get_by_label("Add a file").set_input_files(str(path))
    section.get_by_role("button", name="Upload").click()


def accept_dialogs(page: Page) -> None:
    def on_dialog(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", on_dialog)


def test_the_author_manages_materials_and_other_learners_see_only_what_they_may(
    browser: Browser, ui_server: LiveServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(NOTES)
    handout = tmp_path / "handout.md"
    handout.write_text("# Leaves\n\nChlorophyll makes leaves green and catches the light for photosynthesis.\n")
    fake = tmp_path / "worksheet.pdf"
    fake.write_text("This is only text with a PDF's name.")

    with open_page(browser, ui_server.base_url) as author:
        sign_up(author, "Tess Teacher")
        companion_id = build_companion(author, "Leafy", "science", "Plants")
        section = materials_section(author)
        expect(section).to_contain_text("No materials yet")
        upload(author, notes)
        item = section.get_by_role("listitem").filter(has_text="notes.txt")
        expect(item).to_contain_text("2 passages")
        expect(section.get_by_role("status")).to_contain_text("notes.txt was added")
        upload(author, handout)
        expect(section.get_by_role("listitem").filter(has_text="handout.md")).to_contain_text("1 passage")
        # A file that is not what its name says: the reason in words, and nothing added.
        upload(author, fake)
        expect(section.get_by_role("alert")).to_contain_text("is named .pdf but is not a PDF")
        expect(section.get_by_role("listitem")).to_have_count(2)
        # The notes may be downloaded by learners; the handout stays the author's.
        toggle = section.get_by_role("checkbox", name="Learners may download notes.txt")
        toggle.check()
        expect(toggle).to_be_checked()
        expect(toggle).to_be_enabled()
        assert_no_axe_violations(author, "the author's materials")

        with open_page(browser, ui_server.base_url) as learner:
            sign_up(learner, "Bob Learner")
            learner.goto(f"/companions/{companion_id}")
            theirs = materials_section(learner)
            expect(theirs.get_by_role("listitem")).to_have_count(2)
            expect(theirs.get_by_role("link", name="Download")).to_have_count(1)
            expect(theirs.get_by_role("listitem").filter(has_text="notes.txt").get_by_role("link")).to_have_attribute(
                "href", re.compile(r"/download$")
            )
            expect(theirs.get_by_label("Add a file")).to_have_count(0)
            expect(theirs.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
            with learner.expect_download() as download:
                theirs.get_by_role("link", name="Download").click()
            assert Path(download.value.path()).read_text() == NOTES
            assert_no_axe_violations(learner, "a learner's view of the materials")

        accept_dialogs(author)
        section.get_by_role("button", name="Delete notes.txt").click()
        expect(section.get_by_role("listitem")).to_have_count(1)
        expect(section.get_by_role("listitem")).to_contain_text("handout.md")


class NotesTutor:
    """Answers from the first passage it was given, citing it; without passages, says so."""

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        for message in reversed(messages):
            content = str(message.get("content"))
            if message.get("role") == "system" and "[1] (" in content:
                first = next(line for line in content.splitlines() if line.startswith("[1] "))
                return f"Your teacher's notes say [1]: {first.split(') ', 1)[1].split('. ')[0]}."
        return "I have no notes about that."


@pytest.fixture(scope="module")
def notes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server with its speech models and a scripted tutor that answers from the teacher's passages."""
    from harness.scripted_llm import MODEL_ID, ScriptedLLM

    with ScriptedLLM(NotesTutor()) as llm:
        env = {
            "TUTOR_VOICE__LLM__BASE_URL": llm.base_url,
            "TUTOR_VOICE__LLM__MODEL": MODEL_ID,
            "TUTOR_VOICE__LLM__TIMEOUT_SECS": "10",
            "TUTOR_VOICE__SILENCE_TIMEOUT_SECS": "60",
            "TUTOR_VOICE__SILENCE_WARNING_SECS": "10",
            "TUTOR_SAFETY__CLASSIFIER": "off",
        }
        with LiveServer(tmp_path_factory.mktemp("notes-server"), env) as server:
            yield server


@pytest.mark.voice
def test_the_tutors_line_shows_the_sources_it_drew_on_live_and_in_the_transcript(
    voice_browser: Browser, notes_server: LiveServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(NOTES)
    with open_page(voice_browser, notes_server.base_url, {"width": 1280, "height": 1000}) as page:
        sign_up(page, "Lena Lesson")
        build_companion(page, "Professor Leaf", "science", "Plants", duration="5 minutes")
        upload(page, notes)
        expect(materials_section(page).get_by_role("listitem")).to_have_count(1)

        page.get_by_role("button", name="Start lesson").click()
        transcript = page.get_by_role("log")
        # The fake microphone asks how plants make their food; the tutor answers from the notes and says so.
        expect(transcript.locator(".bubble--user").first).to_contain_text(HEARD, timeout=LESSON_TIMEOUT_MS)
        cited = transcript.locator(".bubble--assistant").filter(has_text="notes say")
        expect(cited).to_have_count(1, timeout=LESSON_TIMEOUT_MS)
        expect(cited).to_contain_text("Plants make their own food by photosynthesis")
        expect(cited).to_contain_text("Sources: notes.txt")
        # The greeting drew on nothing, so it names no sources.
        expect(transcript.locator(".bubble--assistant").first).not_to_contain_text("Sources")
        assert_no_axe_violations(page, "a live lesson citing its sources")

        page.get_by_role("button", name="End lesson").click()
        page.get_by_role("link", name="Read the transcript").click()
        stored = page.locator(".transcript--stored .bubble--assistant").filter(has_text="notes say")
        expect(stored).to_contain_text("Sources: notes.txt")
        expect(page.locator(".transcript--stored .bubble--user")).not_to_contain_text("Sources")
        assert_no_axe_violations(page, "a stored transcript with sources")
