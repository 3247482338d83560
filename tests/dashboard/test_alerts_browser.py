"""The guardrails and alerts pages in a real headless Chromium at a laptop's 1366x768: an sre signs in,
goes through Guardrails, Alerts, one alert, the rules and the audit log from the navigation, acknowledges
the firing alert, edits a rule with the kind's own fields, adds a webhook channel and reads its secret
once; no console error, no CSP violation, and no page wider than the screen (tables scroll in their card).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect, sync_playwright

from finops.alerts.models import Alert, AlertChannel, Delivery
from finops.alerts.services import channel_create, rule_create
from finops.guardrails.services import allowance_create
from tests.dashboard.test_overview_browser import CHROMIUM, CHROMIUM_ARGS
from tests.dashboard.test_pages_csp_browser import RECORD_VIOLATIONS
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

PASSWORD = "a-long-test-password"
WIDTH, HEIGHT = 1366, 768


def alerting_world():
    support = TeamFactory(slug="support", name="Support")
    agent = AgentFactory(team=support, name="refund-bot")
    sre = UserFactory(username="sree", password=PASSWORD)
    MembershipFactory(user=sre, team=support, role="sre")
    allowance_create(principal=sre, team=support, agent=agent, window="day", limit_usd=Decimal(25))
    channel, _ = channel_create(
        principal=sre, team=support, kind="webhook", target="https://hooks.example/a-rather-long/path/in"
    )
    AlertChannel.objects.filter(pk=channel.pk).update(
        last_failure_at=datetime.now(UTC), consecutive_failures=2, last_error="HTTP 503 Service Unavailable"
    )
    rule = rule_create(
        principal=sre,
        name="runaway refund",
        team=support,
        agent=agent,
        kind="runaway_task",
        metric="cost_usd",
        value=Decimal(5),
        channels=[channel],
    )
    now = datetime.now(UTC)
    firing = Alert.objects.create(
        rule=rule,
        team=support,
        subject="task:support/run-42",
        state="firing",
        value=Decimal("7.5"),
        threshold=Decimal(5),
        started_at=now - timedelta(minutes=3),
        fired_at=now - timedelta(minutes=2),
        last_evaluated_at=now,
    )
    Delivery.objects.create(
        alert=firing,
        channel=channel,
        team=support,
        event="alert.firing",
        payload={},
        status="failed",
        attempts=5,
        last_status_code=503,
        last_error="HTTP 503 Service Unavailable " * 8,
    )
    for number in range(30):
        Alert.objects.create(
            rule=rule,
            team=support,
            subject=f"task:support/old-run-with-a-long-name-{number}",
            state="resolved",
            value=Decimal("6.25"),
            threshold=Decimal(5),
            started_at=now - timedelta(days=number + 1),
            resolved_at=now - timedelta(days=number + 1, minutes=-30),
            last_evaluated_at=now,
        )
    return firing


@pytest.mark.browser
def test_an_sre_goes_through_the_alert_pages(live_server, transactional_db):
    assert CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)"
    firing = alerting_world()
    problems: dict[str, list[str]] = {}
    too_wide: dict[str, int] = {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.add_init_script(RECORD_VIOLATIONS)
            current = {"path": ""}

            def note(text: str) -> None:
                problems.setdefault(current["path"], []).append(text)

            page.on("console", lambda message: note(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: note(str(error)))

            def arrived(ready_selector: str) -> None:
                current["path"] = page.url.removeprefix(live_server.url)
                page.wait_for_selector(ready_selector, timeout=15_000)
                page.wait_for_load_state("networkidle")
                violations = page.evaluate("window.__cspViolations")
                if violations:
                    problems.setdefault(current["path"], []).extend(violations)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > WIDTH:
                    too_wide[current["path"]] = width

            page.goto(f"{live_server.url}/login/")
            page.fill("input[name=username]", "sree")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/home/")  # the sre's home

            nav = page.locator("nav.mainnav")
            expect(nav.get_by_role("link", name="Alerts 1")).to_be_visible()
            nav.get_by_role("link", name="Guardrails").click()
            arrived(".usage .warn-mark")

            nav.get_by_role("link", name="Alerts 1").click()
            arrived("#open-alerts")
            expect(page.locator(".banner")).to_contain_text("HTTP 503 Service Unavailable")
            page.locator("#open-alerts").get_by_role("button", name="Acknowledge").click()
            arrived(".notice")
            expect(page.locator("#open-alerts")).to_contain_text("sree")
            page.get_by_role("link", name="Older").click()
            arrived("#past-alerts")

            page.goto(f"{live_server.url}/alerts/{firing.pk}/")
            arrived("#timeline")
            expect(page.locator("#timeline")).to_contain_text("acknowledged by sree")
            expect(page.locator("#deliveries")).to_contain_text("failed (gave up)")

            nav.get_by_role("link", name="Rules").click()
            arrived("#rules")
            # the rule editor shows the chosen kind's fields only (rules.js)
            form = page.locator("form[data-rule-form]")
            form.locator("select[name=kind]").select_option("forecast")
            expect(form.locator("[data-kind-row=metric]")).to_be_hidden()
            expect(form.locator("[data-kind-row=value]")).to_be_visible()
            form.locator("select[name=kind]").select_option("threshold")
            expect(form.locator("[data-kind-row=window]")).to_be_visible()

            page.fill("form[action$='/alerts/channels/'] input[name=target]", "https://hooks.example/new")
            page.locator("form[action$='/alerts/channels/']").get_by_role(
                "button", name="Add channel"
            ).click()
            arrived("#new-secret")
            assert page.locator("#new-secret").inner_text().startswith("whsec_")

            page.locator("#rules").get_by_role("link", name="Edit").first.click()
            arrived("form[data-rule-form]")
            expect(page.locator("[data-kind-row=window]")).to_be_hidden()  # a runaway rule has no window
            page.fill("form[data-rule-form] input[name=value]", "8")
            page.locator("form[data-rule-form]").get_by_role("button", name="Save").click()
            arrived(".notice")

            nav.get_by_role("link", name="Audit").click()
            arrived("#audit")
            expect(page.locator("#audit")).to_contain_text("alert_rule")
        finally:
            browser.close()

    assert problems == {}
    assert too_wide == {}, f"pages wider than {WIDTH}px: {too_wide}"
