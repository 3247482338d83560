"""The Overview in a real headless Chromium: log in through the form, charts drawn, no console errors.

Needs /usr/bin/chromium (or FINOPS_CHROMIUM). A missing browser fails the test: it must not pass by
skipping in CI.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from finops.kpis.selectors import month_window
from finops.ledger.services import task_outcomes_record
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

# playwright's sync API runs an event loop in this thread; the ORM calls around it are still sync
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path(os.environ.get("FINOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(tempfile.gettempdir()) / "overview.png"  # /tmp/overview.png on Linux


def ledger_this_month() -> None:
    ModelPriceOverride.objects.create(
        provider="acme",
        model="m1",
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("2"),
        cache_read_per_mtok=Decimal("0.2"),
        output_per_mtok=Decimal("10"),
    )
    support = TeamFactory(slug="support", name="Support")
    triage = AgentFactory(team=support, name="triage", cost_slo_usd=Decimal("0.50"), ideal_steps=3)
    AgentFactory(team=support, name="writer")
    month_start, _ = month_window()
    now = datetime.now(UTC)
    days = max(1, (now - month_start).days)
    events = []
    for day in range(days):
        moment = month_start + timedelta(days=day, hours=12)
        if moment > now:
            moment = now - timedelta(minutes=5)
        for step in range(4):
            events.append(
                {
                    "event_id": f"run-{day}:step-{step}",
                    "timestamp": moment.isoformat(),
                    "team": "support",
                    "agent": "triage",
                    "task_id": f"run-{day}",
                    "provider": "acme",
                    "model": "m1",
                    "usage": {
                        "uncached_input": 20_000 + 1_000 * day,
                        "cache_read": 60_000 + 3_000 * step,
                        "output": 800,
                    },
                }
            )
        events.append(
            {
                "event_id": f"batch-{day}",
                "timestamp": moment.isoformat(),
                "team": "support",
                "agent": "writer",
                "provider": "acme",
                "model": "m1" if day % 3 else "mystery-model",
                "usage": {"uncached_input": 200_000, "output": 4_000, "reasoning": 1_000},
            }
        )
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert result.accepted == len(events), result.rejected
    task_outcomes_record(
        outcomes=[
            {
                "team": support,
                "agent": triage,
                "task_id": f"run-{day}",
                "status": "success" if day % 4 else "failure",
                "started_at": min(month_start + timedelta(days=day, hours=12), now - timedelta(minutes=5)),
                "ended_at": min(month_start + timedelta(days=day, hours=13), now - timedelta(minutes=1)),
            }
            for day in range(days)
        ]
    )
    member = UserFactory(username="sam", first_name="Sam", last_name="Support")
    member.set_password("a-long-test-password")
    member.save()
    MembershipFactory(user=member, team=support)


@pytest.mark.browser
def test_overview_in_a_real_browser(live_server, transactional_db):
    assert CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)"
    ledger_this_month()
    console_errors: list[str] = []
    outside_requests: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on(
                "console", lambda message: message.type == "error" and console_errors.append(message.text)
            )
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on(
                "request",
                lambda request: (
                    request.url.startswith(live_server.url) or outside_requests.append(request.url)
                ),
            )

            page.goto(f"{live_server.url}/")
            assert "/login/" in page.url
            page.fill("input[name=username]", "sam")
            page.fill("input[name=password]", "a-long-test-password")
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/")

            assert page.locator("h1").inner_text().startswith("Overview")
            assert page.locator("#total-spend .big").inner_text().startswith("$")
            page.wait_for_selector("#spend-by-day-plot.js-plotly-plot .main-svg", timeout=15_000)
            assert page.locator("#spend-by-day-plot .plot-container").count() == 1
            assert page.locator("#spend-by-day-plot .barlayer .point").count() > 0
            page.wait_for_selector("#cache-hit-by-day-plot.js-plotly-plot", timeout=15_000)
            page.wait_for_selector("#tokens-by-type-plot.js-plotly-plot", timeout=15_000)
            assert page.locator(".bullet.js-plotly-plot").count() >= 3
            # the cache hit chart draws its target line
            assert page.locator("#cache-hit-by-day-plot .shapelayer path").count() >= 1
            page.screenshot(path=str(SCREENSHOT))
            page.screenshot(path=str(SCREENSHOT.with_name("overview-full.png")), full_page=True)

            # changing "stack by" reloads with it in the URL and redraws
            page.select_option("#stack-by", "token_type")
            page.wait_for_url("**stack_by=token_type**")
            page.wait_for_selector("#spend-by-day-plot.js-plotly-plot .main-svg", timeout=15_000)
            assert "cache read" in page.locator("#spend-by-day-plot").inner_text()
        finally:
            browser.close()

    assert console_errors == []
    assert outside_requests == []  # nothing fetched from a CDN or anywhere else
