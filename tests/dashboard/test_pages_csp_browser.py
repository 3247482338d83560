"""Every kind of page under the Content-Security-Policy in a real headless Chromium: no violation, no
console error, and the scripts that remain (charts, import progress, Swagger UI, admin) still run."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from finops.accounts.models import OrgRole
from ingest.models import ImportJob, ImportStatus
from tests.dashboard.test_overview_browser import CHROMIUM, CHROMIUM_ARGS, ledger_this_month
from tests.factories import UserFactory

PASSWORD = "a-long-test-password"
# runs before any script of the page, outside its CSP: records every violation the browser reports
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " blocked " + event.blockedURI);
});
"""


@pytest.mark.browser
def test_pages_load_under_the_csp_with_no_violation(live_server, transactional_db):
    assert CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)"
    ledger_this_month()
    root = UserFactory(username="root", password=PASSWORD, org_role=OrgRole.ADMIN, is_superuser=True)
    job = ImportJob.objects.create(
        created_by=root, file_name="events.jsonl", stored_path="/nonexistent", status=ImportStatus.RUNNING
    )
    problems: dict[str, list[str]] = {}
    policies: dict[str, str] = {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.add_init_script(RECORD_VIOLATIONS)
            current = {"path": ""}

            def note(text: str) -> None:
                problems.setdefault(current["path"], []).append(text)

            def on_console(message) -> None:
                # the admin's pages name no icon, so the browser asks for /favicon.ico: a 404, not a fault
                if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
                    note(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: note(str(error)))

            def visit(path: str, ready_selector: str) -> None:
                current["path"] = path
                response = page.goto(f"{live_server.url}{path}")
                assert response is not None and response.status == 200, path
                policies[path] = response.headers.get("content-security-policy", "")
                page.wait_for_selector(ready_selector, timeout=15_000)
                page.wait_for_load_state("networkidle")
                violations = page.evaluate("window.__cspViolations")
                if violations:
                    problems.setdefault(path, []).extend(violations)

            visit("/login/", "input[name=username]")
            page.fill("input[name=username]", "root")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/home/")
            page.wait_for_load_state("networkidle")

            visit("/home/", "#home-budgets")

            visit("/", "#spend-by-day-plot.js-plotly-plot .main-svg")
            visit("/breakdown/", "#input-breakdown-plot.js-plotly-plot .main-svg")
            visit("/forecast/", "#forecast-plot.js-plotly-plot .main-svg")
            visit("/models/", "#flagship-share-plot.js-plotly-plot .main-svg")
            visit("/caching/", "#cache-hit-rate-plot.js-plotly-plot .main-svg")
            visit("/ingest/quarantine", "#replay-form")
            visit("/ingest/upload", "input[type=file]")
            visit(f"/ingest/jobs/{job.pk}", "#job-status")
            # the progress script (a static file now) polls and shows the job finishing
            ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.DONE, accepted=7)
            expect(page.locator("#job-accepted")).to_have_text("7", timeout=15_000)
            visit("/connectors/", "#connectors-heading")
            visit("/api/v1/docs", ".swagger-ui .opblock")
            visit("/admin/", "#content-main")
            visit("/admin/accounts/user/", "#result_list")
            visit(f"/admin/accounts/user/{root.pk}/change/", "#user_form")
        finally:
            browser.close()

    assert problems == {}
    for path, policy in policies.items():
        directives = dict(directive.strip().split(" ", 1) for directive in policy.split(";"))
        assert directives["script-src"] == "'self'", path
