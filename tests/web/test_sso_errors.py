"""The sign-in page explains why the school's sign-in (SSO) sent the learner back with `?error=<code>`."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_an_expired_school_sign_in_is_explained_and_the_learner_can_go_on(page: Page) -> None:
    # Where the SSO callback lands after a stale tab or blocked cookies (server/api/sso.py).
    page.goto("/signin?error=sso_state_mismatch&next=%2Fcompanions")

    alert = page.locator("#main").get_by_role("alert")
    expect(alert).to_have_text("That sign-in link expired — try again.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome back")
    # The code leaves the address (a reload shows no stale failure) but where to go next is kept.
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fcompanions$"))
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome back")
    expect(page.get_by_text("That sign-in link expired")).to_have_count(0)


def test_an_unknown_sign_in_error_gets_a_plain_message_not_the_code(page: Page) -> None:
    page.goto("/signin?error=sso_something_new")

    expect(page.locator("#main").get_by_role("alert")).to_have_text(
        "Signing in with your school didn't work — try again, or sign in with your email."
    )
    expect(page.get_by_text("sso_something_new")).to_have_count(0)
