"""A person of two teams in a real Chromium: login lands on the home of their highest role, the team
switcher opens the chosen team on the page they are on (nav.js), keeping its other filters."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from finops.accounts.models import Membership
from tests.dashboard.test_overview_browser import CHROMIUM, CHROMIUM_ARGS
from tests.factories import TeamFactory, UserFactory

PASSWORD = "a-long-test-password"


@pytest.mark.browser
def test_the_home_and_the_team_switcher(live_server, transactional_db):
    assert CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)"
    support, billing = (
        TeamFactory(slug="support", name="Support"),
        TeamFactory(slug="billing", name="Billing"),
    )
    person = UserFactory(username="duo", password=PASSWORD)
    Membership.objects.create(user=person, team=support, role="pm")
    Membership.objects.create(user=person, team=billing, role="sre")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_server.url}/login/")
            page.fill("input[name=username]", "duo")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/home/")
            expect(page.locator("h1")).to_contain_text("Guardrails and alerts")  # sre ranks above pm
            page.get_by_role("link", name="Agents against their cost SLO").click()
            page.wait_for_url("**/home/?as=pm")
            expect(page.locator("h1")).to_contain_text("support")

            page.goto(f"{live_server.url}/alerts/?state=firing")
            page.select_option("#team-switch-select", "billing")  # no button pressed: nav.js submits
            page.wait_for_url("**/alerts/?state=firing&team=billing")
            expect(page.locator("h1 .scope")).to_have_text("billing")
            expect(page.locator("#team-switch-select")).to_have_value("billing")
        finally:
            browser.close()
    assert not errors, errors
