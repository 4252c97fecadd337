"""The builder's voice picker: exactly the installed voices, by name, each with a preview that plays."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.live_server import LiveServer
from server.voices import bundled_voice_path
from tests.web.conftest import assert_no_axe_violations, build_companion, open_page, sign_up

pytestmark = pytest.mark.browser

ALBA = "en_GB-alba-medium"
BRITISH = {"code": "en_GB", "name_english": "English", "country_english": "Great Britain"}
GERMAN = {"code": "de_DE", "name_english": "German", "country_english": "Germany"}


def install_voice(models_dir: Path, voice_id: str, **config: Any) -> None:
    """A piper voice dropped under models/ as the README says: <id>.onnx and <id>.onnx.json (the bundled model
    under another speaker's description)."""
    bundled = bundled_voice_path()
    os.symlink(bundled, models_dir / f"{voice_id}.onnx")
    described = json.loads(Path(f"{bundled}.json").read_text(encoding="utf-8")) | config
    (models_dir / f"{voice_id}.onnx.json").write_text(json.dumps(described), encoding="utf-8")


@pytest.fixture(scope="module")
def voices_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server with two voices a school added: a woman's (by piper's table) and one nobody described."""
    models = tmp_path_factory.mktemp("models")
    install_voice(models, ALBA, dataset="alba", language=BRITISH)
    install_voice(models, "de_DE-mystery-low", dataset="mystery", language=GERMAN)
    env = {"TUTOR_VOICE__PRELOAD": "false", "TUTOR_VOICE__MODELS_DIR": str(models)}
    with LiveServer(tmp_path_factory.mktemp("voices-server"), env) as server:
        yield server


@pytest.fixture
def voices_page(browser: Browser, voices_server: LiveServer) -> Iterator[Page]:
    with open_page(browser, voices_server.base_url) as page:
        yield page


def test_the_builder_offers_exactly_the_installed_voices_each_with_a_preview(voices_page: Page) -> None:
    page = voices_page
    sign_up(page)
    page.goto("/companions/new")
    picker = page.get_by_role("group", name="Voice")
    radios = picker.get_by_role("radio")
    expect(radios).to_have_count(3)
    names = [radios.nth(i).evaluate("r => r.labels[0].textContent") for i in range(3)]
    assert names == ["Joe", "Mystery", "Alba"]
    # The bundled voice is the default; each says its language, and a gender only where the server knows it.
    expect(picker.get_by_role("radio", name="Joe", exact=True)).to_be_checked()
    expect(picker.get_by_role("radio", name="Alba", exact=True)).to_have_accessible_description(
        "English (Great Britain) · Female"
    )
    expect(picker.get_by_role("radio", name="Joe", exact=True)).to_have_accessible_description(
        "English (United States) · Male"
    )
    expect(picker.get_by_role("radio", name="Mystery", exact=True)).to_have_accessible_description("German (Germany)")
    # Only the one woman's voice says "Female": no voice promises a speaker it does not have.
    expect(page.get_by_text(re.compile("female", re.IGNORECASE))).to_have_count(1)

    preview = picker.get_by_role("button", name="Preview Alba")
    with page.expect_response(re.compile(f"/api/voices/{ALBA}/preview$")) as answer:
        preview.click()
    assert answer.value.status == 200
    assert answer.value.headers["content-type"] == "audio/wav"
    expect(preview).to_have_attribute("aria-pressed", "true")
    # The preview really plays: the <audio> element moves through the sentence, then the button is released.
    page.wait_for_function(
        "() => { const a = document.querySelector('.voice-picker__audio'); return a.currentTime > 0.3 }",
        timeout=30_000,
    )
    expect(preview).to_have_attribute("aria-pressed", "false", timeout=20_000)
    assert_no_axe_violations(page, "the builder's voice picker")

    # Pressing another voice's preview while one plays stops the first.
    picker.get_by_role("button", name="Preview Mystery").click()
    picker.get_by_role("button", name="Preview Joe").click()
    expect(picker.get_by_role("button", name="Preview Mystery")).to_have_attribute("aria-pressed", "false")
    expect(picker.get_by_role("button", name="Preview Joe")).to_have_attribute("aria-pressed", "true")

    # The chosen voice is kept, and the editor shows it chosen.
    companion_id = build_companion(page, "Miss Alba", "history", "The Tudors", voice="Alba")
    page.goto(f"/companions/{companion_id}/edit")
    expect(page.get_by_role("group", name="Voice").get_by_role("radio", name="Alba", exact=True)).to_be_checked()


def test_an_old_companion_shows_the_voice_it_speaks_with(voices_page: Page, voices_server: LiveServer) -> None:
    page = voices_page
    sign_up(page)
    companion_id = build_companion(page, "Old Timer", "maths", "Long division")
    # What migration 0006 leaves in a companion made when voices were "male" or "female".
    with sqlite3.connect(voices_server.data_dir / "tutor.db") as db:
        db.execute("UPDATE companions SET voice = 'female' WHERE id = ?", (companion_id,))
    page.goto(f"/companions/{companion_id}/edit")
    picker = page.get_by_role("group", name="Voice")
    expect(picker.get_by_role("radio", name="Joe", exact=True)).to_be_checked()
    expect(picker.get_by_role("radio", checked=True)).to_have_count(1)
