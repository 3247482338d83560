"""Each demo role in a real headless Chromium, as its person would on a first morning (issue 9, point 10).

The demo data set (`finops demo`, fixed seed) is loaded once for the module, committed, and served by a
live server of the module's own; the tables are flushed when the module ends. Then for each role of
SPEC's table: log in through the form, land on the role's home, follow every link of the main
navigation, and on each page: no console error, no failed request, no request to any host but the
server (every other host is routed to a failure), and a full-page screenshot under
tests/.screenshots/<role>/ (git-ignored). The numbers the pages show are checked against the API, asked
with the browser's own session: the Overview's KPIs against GET /api/v1/kpis, the homes' headline
figures against the KPIs and model usage of the same window, the Models page against GET
/api/v1/models/usage. Every page of the navigation a role is not offered answers 403 or 404 when forced.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.urls import reverse
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from pytest_django.live_server_helper import LiveServer

from dashboard.navigation import NAV
from ingest.demo import demo_load
from tests.dashboard.test_overview_browser import CHROMIUM, CHROMIUM_ARGS

SEED = 42
DAYS = 30
WIDTH, HEIGHT = 1366, 768
SCREENSHOTS = Path(__file__).resolve().parents[1] / ".screenshots"
# one demo login per role of SPEC's table (ingest/demo.py, DEMO_ACCOUNTS): the team each one is in is
# the team whose story its home tells
LOGINS = {
    "admin": "admin",
    "finops": "finops",
    "sre": "coding-sre",
    "tech_lead": "support-tech-lead",
    "pm": "coding-pm",
    "ml": "research-ml",
    "viewer": "support-viewer",
}
# what each one's landing page is headed (dashboard/home.py, HOME_LABELS; a viewer's home is the Overview)
HOMES = {
    "admin": "Spend against budgets",
    "finops": "Spend against budgets",
    "sre": "Guardrails and alerts",
    "tech_lead": "Prompt versions",
    "pm": "Agents against their cost SLO",
    "ml": "Models",
    "viewer": "Overview",
}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def demo_server(django_db_setup, django_db_blocker, stray_sessions_ended_at_exit):
    """The demo, committed (the server's thread reads it on its own connection), and a live server."""
    with django_db_blocker.unblock():
        clock = time.monotonic()
        demo = demo_load(days=DAYS, seed=SEED, end=datetime.now(UTC).replace(microsecond=0))
        TIMINGS["demo load"] = time.monotonic() - clock
        server = LiveServer("localhost")
        server._live_server_modified_settings.enable()  # ALLOWED_HOSTS gets the server's host
        try:
            yield server, demo
        finally:
            server._live_server_modified_settings.disable()
            server.stop()
            call_command("flush", interactive=False, verbosity=0)  # the next modules start empty


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def money(text: str) -> Decimal | None:
    """$1,234.56 as shown → Decimal('1234.56'); "—" (unknown: no call priced) → None."""
    if text.strip() == "—":
        return None
    return Decimal(text.strip().replace("$", "").replace(",", ""))


def places(text: str) -> Decimal:
    """The precision a shown amount has: $12.34 → 0.01."""
    shown = text.strip().replace("$", "").replace(",", "")
    return Decimal(1).scaleb(-len(shown.split(".")[1])) if "." in shown else Decimal(1)


def as_shown(text: str, value: str | Decimal | None) -> Decimal | None:
    """The API's amount rounded as the page rounded the one it shows, for an exact comparison."""
    return None if value is None else Decimal(value).quantize(places(text))


def number(text: str) -> int:
    return int(text.strip().replace(",", ""))


def page_name(path: str) -> str:
    """/ → overview, /home/ → home, /ingest/upload → ingest-upload, /api/v1/docs → api-v1-docs."""
    return "-".join(part for part in path.split("/") if part) or "overview"


class Visit:
    """One role's browser context: what went wrong, per page, and the pages it saw."""

    def __init__(self, browser, server_url: str, role: str) -> None:
        self.server = server_url
        self.role = role
        self.problems: dict[str, list[str]] = {}
        self.outside: list[str] = []
        self.pages: list[str] = []
        self.seconds = {"open": 0.0, "wait": 0.0, "screenshot": 0.0}  # where the role's time went
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.context.route(re.compile(r"^(?!" + re.escape(server_url) + r"/)"), self._outside)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.note(str(error)))
        self.page.on("requestfailed", lambda request: self.note(f"failed: {request.url} {request.failure}"))
        self.page.on(
            "response",
            lambda response: response.status >= 400 and self.note(f"HTTP {response.status}: {response.url}"),
        )
        (SCREENSHOTS / role).mkdir(parents=True, exist_ok=True)
        # the guard itself: a request to another host is stopped and counted
        probe = self.context.new_page()
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            probe.goto("https://cdn.example.com/plotly.min.js")
        probe.close()
        assert self.outside == ["https://cdn.example.com/plotly.min.js"]
        self.outside.clear()

    def _outside(self, route) -> None:
        self.outside.append(route.request.url)
        route.abort("blockedbyclient")

    def _console(self, message) -> None:
        if message.type == "error":
            self.note(f"console: {message.text}")

    @property
    def path(self) -> str:
        parts = urlsplit(self.page.url)
        return parts.path

    def note(self, text: str) -> None:
        # a request the route aborted is counted in `outside`, not twice
        if "blockedbyclient" in text or "ERR_BLOCKED_BY_CLIENT" in text:
            return
        self.problems.setdefault(self.path, []).append(text)

    def arrived(self) -> None:
        """The page is loaded, its scripts ran and its charts are drawn: keep a screenshot of it."""
        clock = time.monotonic()
        self.page.wait_for_load_state("load")
        if self.path == reverse("api:docs"):  # Swagger UI fetches the schema once loaded
            self.page.wait_for_selector(".swagger-ui .opblock")
        self.page.wait_for_function(
            "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))"
        )
        self.seconds["wait"] += time.monotonic() - clock
        if self.page.locator("body").count():  # template syntax printed as text: a tag or comment left open
            shown = self.page.locator("body").inner_text()
            for leak in ("{#", "#}", "{%", "%}", "{{", "}}"):
                if leak in shown:
                    self.note(f"template syntax {leak!r} on the page")
        self.pages.append(self.path)
        clock = time.monotonic()
        self.page.screenshot(
            path=str(SCREENSHOTS / self.role / f"{page_name(self.path)}.png"), full_page=True
        )
        self.seconds["screenshot"] += time.monotonic() - clock

    def api(self, path: str, **params) -> dict:
        """The API as this browser's session asks it (session authentication, same cookies)."""
        response = self.page.request.get(f"{self.server}{path}?{urlencode(params)}")
        assert response.status == 200, (path, params, response.status, response.text())
        return response.json()

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def rows(self, table: str) -> list[list[str]]:
        """The body rows of one of the page's tables (dashboard/_table.html), as the cells' text."""
        rows = self.page.locator(f"#table-{table} tbody tr").evaluate_all(
            "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))"
        )
        width = self.page.locator(f"#table-{table} thead th").count()
        return [row for row in rows if len(row) == width]  # not the empty state's one wide cell

    def foot(self, table: str) -> list[str]:
        return self.page.locator(f"#table-{table} tfoot tr").evaluate(
            "row => [...row.cells].map(cell => cell.innerText.trim())"
        )


def usd_exact(value: str | None) -> str:
    return "—" if value is None else f"${Decimal(value):,.6f}"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def window_of(visit: Visit) -> tuple[date, date]:
    """The page's window from its filter bar: [start, end] inclusive, as whole UTC days."""
    start = date.fromisoformat(visit.page.input_value("#filter-start"))
    end = date.fromisoformat(visit.page.input_value("#filter-end"))
    return start, end


def check_overview(visit: Visit) -> dict:
    """The Overview's cards against GET /api/v1/kpis for the window and team the page shows."""
    start, end = window_of(visit)
    team = visit.page.locator("form.filters select[name=team]")
    params = {"start": f"{start}T00:00:00Z", "end": f"{end + timedelta(days=1)}T00:00:00Z"}
    if team.count() and team.input_value():
        params["team"] = team.input_value()
    kpis = visit.api("/api/v1/kpis", **params)
    assert kpis["calls"] > 0, f"{visit.role}: the demo's window shows no call"
    shown = {
        "spend": visit.page.get_attribute("#total-spend .big", "title"),
        "calls": visit.text("#total-spend .detail").split(" calls")[0],
        "not in task calls": visit.text("#not-in-task .detail").split(" calls")[0],
        "unpriced": visit.text("#unpriced .big"),
        "tasks ended": visit.text("#tasks .big"),
        "tasks detail": visit.text("#tasks .detail"),
        "$ per successful task": visit.page.get_attribute("#kpi-cost-per-task .big", "title"),
        "cache hit rate": visit.text("#kpi-cache-hit .big"),
        "token efficiency": visit.text("#kpi-efficiency .big"),
        "step inflation": visit.text("#kpi-inflation .big").rstrip("×"),
    }
    tasks = kpis["tasks"]
    expected = {
        "spend": usd_exact(kpis["cost_usd"]),
        "calls": f"{kpis['calls']:,}",
        "not in task calls": f"{kpis['calls_not_in_task']:,}",
        "unpriced": f"{kpis['unpriced_calls']:,}",
        "tasks ended": f"{tasks['ended']:,}",
        "tasks detail": f"{tasks['successful']:,} successful, {tasks['failed']:,} failed, "
        f"{tasks['abandoned']:,} abandoned, {tasks['killed']:,} killed",
        "$ per successful task": usd_exact(kpis["cost_per_successful_task_usd"]),
        "cache hit rate": percent(kpis["cache_hit_rate"]),
        "token efficiency": ratio(kpis["token_efficiency_index"]),
        "step inflation": ratio(kpis["step_inflation_ratio"]),
    }
    assert shown == expected, f"{visit.role}: Overview {params}"
    return kpis


def check_models_page(visit: Visit) -> dict:
    """The Models page's totals, tiers and models against GET /api/v1/models/usage for its window."""
    start, end = window_of(visit)
    usage = visit.api("/api/v1/models/usage", start=start, end=end + timedelta(days=1))
    total = usage["total"]
    assert total["calls"] > 0
    detail = visit.text("#total-spend .detail")
    assert visit.page.get_attribute("#total-spend .big", "title") == usd_exact(total["cost_usd"])
    assert detail.startswith(f"{total['calls']:,} calls, {total['tokens']:,} tokens"), detail
    if total["unpriced_calls"]:
        assert f"excludes {total['unpriced_calls']:,} unpriced" in detail
    assert visit.text("#flagship-share .big") == percent(usage["flagship_share_of_calls"])
    assert visit.text("#model-count .big") == str(len(usage["models"]))
    # the tier table: calls, tokens, cost per tier and the "All" foot
    tiers = {row[0]: row for row in visit.rows("tiers")}
    assert set(tiers) == {tier["tier"] for tier in usage["tiers"]}
    for tier in usage["tiers"]:
        row = tiers[tier["tier"]]
        assert (number(row[1]), number(row[3])) == (tier["calls"], tier["tokens"]), row
        assert money(row[5]) == as_shown(row[5], tier["cost_usd"]), row
        assert number(row[7]) == tier["unpriced_calls"], row
    foot = visit.foot("tiers")
    assert (number(foot[1]), number(foot[3]), number(foot[7])) == (
        total["calls"],
        total["tokens"],
        total["unpriced_calls"],
    )
    assert money(foot[5]) == as_shown(foot[5], total["cost_usd"])
    # each model's row
    models = {(row[0], row[1]): row for row in visit.rows("models")}
    assert set(models) == {(model["provider"], model["model"]) for model in usage["models"]}
    for model in usage["models"]:
        row = models[(model["provider"], model["model"])]
        assert (row[2], number(row[3]), number(row[5])) == (model["tier"], model["calls"], model["tokens"])
        assert money(row[7]) == as_shown(row[7], model["cost_usd"]), row
    return usage


def last_30_days() -> tuple[date, date]:
    """The homes' recent window: the last 30 UTC days, today included, as [first, end)."""
    today = datetime.now(UTC).date()
    return today - timedelta(days=29), today + timedelta(days=1)


def check_home(visit: Visit, role: str) -> str:
    """The home's headline figures against the API over the same window; returns what was compared."""
    if role in ("admin", "finops"):
        # admin's home is finops's: this month's spend per team against the KPIs of the month so far
        today = datetime.now(UTC).date()
        month = {
            "start": f"{today.replace(day=1)}T00:00:00Z",
            "end": f"{today + timedelta(days=1)}T00:00:00Z",
        }
        rows = visit.rows("budgets")
        assert len(rows) == 4, rows
        for row in rows:
            kpis = visit.api("/api/v1/kpis", team=row[0], **month)
            assert money(row[1]) == as_shown(row[1], kpis["cost_usd"]), row
            budget = visit.api(f"/api/v1/teams/{row[0]}")["monthly_budget_usd"]
            assert (row[5] == "—") if budget is None else money(row[5]) == as_shown(row[5], budget), row
        everything = visit.api("/api/v1/kpis", **month)
        foot = visit.foot("budgets")
        assert money(foot[1]) == as_shown(foot[1], everything["cost_usd"]), foot
        by_provider = visit.rows("spend-by-provider")
        assert sum(number(row[3]) for row in by_provider) == everything["calls"]
        assert sum(number(row[4]) for row in by_provider) == everything["unpriced_calls"]
        return (
            "month to date per team and all teams ($), calls and unpriced calls per provider vs /kpis; "
            "each team's monthly budget vs /teams/<slug>"
        )
    start, end = last_30_days()
    window = {"start": f"{start}T00:00:00Z", "end": f"{end}T00:00:00Z"}
    if role == "sre":
        firing = visit.api("/api/v1/alerts", state="firing")
        found = firing["results"] if isinstance(firing, dict) else firing
        assert visit.text("#home-firing .big") == f"{len(found):,}"
        # the coding team's day allowance (the demo's guardrails story): used $, tokens and limit
        listed = visit.api("/api/v1/allowances")
        allowances = listed["results"] if isinstance(listed, dict) else listed
        rows = visit.rows("allowances")
        assert len(rows) == len(allowances) >= 1, rows
        for row, allowance in zip(
            rows, sorted(allowances, key=lambda a: -Decimal(a["used_usd"])), strict=True
        ):
            assert money(row[2]) == as_shown(row[2], allowance["used_usd"]), (row, allowance)
            assert number(row[4]) == allowance["used_tokens"], (row, allowance)
            assert money(row[3]) == as_shown(row[3], allowance["limit_usd"]), (row, allowance)
        unpriced = visit.rows("unpriced-calls")
        kpis = visit.api("/api/v1/kpis", team="coding", **window)
        assert sum(number(row[4]) for row in unpriced) == kpis["unpriced_calls"]
        return (
            "firing alerts vs /alerts?state=firing; allowance used $, used tokens, limit vs /allowances; "
            "unpriced calls (30 d) vs /kpis"
        )
    if role == "tech_lead":
        versions = visit.rows("prompt-versions")
        assert versions, "no prompt version shown"
        for agent in {row[0] for row in versions}:
            team = next(row[1] for row in versions if row[0] == agent)
            kpis = visit.api("/api/v1/kpis", team=team, agent=agent, **window)
            assert sum(number(row[5]) for row in versions if row[0] == agent) == kpis["calls"], agent
        return "calls per agent summed over its prompt versions (30 d) vs /kpis?agent="
    if role == "pm":
        rows = visit.rows("agents-slo")
        assert rows
        over = 0
        for row in rows:
            kpis = visit.api("/api/v1/kpis", team=row[1], agent=row[0], **window)
            tasks = kpis["tasks"]
            assert (number(row[2]), number(row[3])) == (tasks["ended"], tasks["successful"]), row
            per_task = kpis["cost_per_successful_task_usd"]
            assert (row[4] == "—") if per_task is None else money(row[4]) == as_shown(row[4], per_task), row
            over += row[6] == "over SLO"
        assert visit.text("#home-over-slo .big") == str(over)
        return "tasks ended, successful and $ per successful task per agent (30 d) vs /kpis?agent="
    if role == "ml":
        usage = visit.api("/api/v1/models/usage", start=start, end=end)
        models = {(row[0], row[1]): row for row in visit.rows("models")}
        assert set(models) == {(model["provider"], model["model"]) for model in usage["models"]}
        for model in usage["models"]:
            row = models[(model["provider"], model["model"])]
            assert (number(row[4]), number(row[5])) == (model["calls"], model["unpriced_calls"]), row
            if model["unpriced_calls"] == model["calls"]:  # no price: unknown, never $0
                assert (row[2], row[3]) == ("—", "—"), row
            else:
                assert money(row[2]) == as_shown(row[2], model["cost_usd"]), row
        return "spend, calls and unpriced calls per model (30 d) vs /models/usage"
    raise AssertionError(f"no home check for {role}")


# pages of the navigation that change something and nothing else, or are organisation billing data
# (reconciliation, prices, months): forced by a role not offered them, a 403 or 404. The other pages the navigation
# leaves out for some roles (Rules, Audit, Quarantine) are theirs to read (navigation.py): forced, they open
# with no form that changes anything
WRITE_ONLY_PAGES = {
    "ingest:upload",
    "connectors:status",
    "dashboard:reconciliation",
    "ingest:invoices",
    "dashboard:prices",
    "dashboard:months",
}
CHANGING_CONTROLS = "main form[method=post] button, main form[method=post] input[type=submit]"


@pytest.mark.browser
@pytest.mark.django_db  # sets the test database up; the data is the module's, committed (demo_server)
@pytest.mark.parametrize("role", list(LOGINS))
def test_each_role_finds_its_pages_and_the_numbers_match_the_api(role, demo_server, browser):
    server, demo = demo_server
    url = server.url
    clock = time.monotonic()
    visit = Visit(browser, url, role)
    compared: list[str] = []
    try:
        page = visit.page
        page.goto(f"{url}/login/")
        page.fill("input[name=username]", LOGINS[role])
        page.fill("input[name=password]", LOGINS[role])
        page.click("button[type=submit]")
        # the role's home; a viewer's home is the team Overview
        page.wait_for_url(f"{url}/" if role == "viewer" else f"{url}/home/")
        visit.arrived()
        assert visit.text("main h1").startswith(HOMES[role]), visit.text("main h1")
        if role not in ("admin", "finops"):  # a person of one team: the heading names it
            assert visit.text("#nav-team").split()[-1] == LOGINS[role].split("-")[0]
        if role == "viewer":
            check_overview(visit)
            compared.append("home (the team Overview): KPIs vs /kpis")
        else:
            compared.append("home: " + check_home(visit, role))

        nav = page.locator("nav.mainnav a")
        links = nav.evaluate_all("links => links.map(a => [a.innerText.trim(), a.getAttribute('href')])")
        offered = [href for _, href in links]
        seen = {reverse("dashboard:home"), visit.path}  # the home it landed on (a viewer's: the Overview)
        for _, href in links:
            if href in seen:
                continue
            seen.add(href)
            opened = time.monotonic()
            link = page.locator(f'nav.mainnav a[href="{href}"]')
            if link.count():
                with page.expect_navigation():
                    link.click()
            else:  # the API docs and the Django admin have no main navigation of ours
                page.goto(f"{url}{href}")
            visit.seconds["open"] += time.monotonic() - opened
            visit.arrived()
            if href == "/":
                check_overview(visit)
                compared.append("Overview: 10 KPI figures vs /kpis")
            elif href == reverse("dashboard:models"):
                usage = check_models_page(visit)
                compared.append(f"Models: totals, {len(usage['tiers'])} tiers, {len(usage['models'])} models")

        # the pages of the navigation the role is not offered, forced
        refused, read_only = {}, {}
        for item in NAV:
            path = reverse(item.url_name)
            if path in offered:
                continue
            if item.url_name in WRITE_ONLY_PAGES:
                refused[path] = page.request.get(f"{url}{path}", max_redirects=0).status
            else:
                response = page.goto(f"{url}{path}")
                visit.arrived()
                read_only[path] = (response.status, page.locator(CHANGING_CONTROLS).count())
    finally:
        visit.context.close()
    TIMINGS[role] = time.monotonic() - clock
    if "demo load" in TIMINGS:
        print(f"\ndemo loaded in {TIMINGS.pop('demo load'):.1f}s: {demo.ingest.accepted:,} calls")
    print(f"\n{role} ({LOGINS[role]}) in {TIMINGS[role]:.1f}s: pages {visit.pages}; refused {refused}")
    print(f"  read only when forced (status, changing controls): {read_only}")
    print("  compared: " + "; ".join(compared))
    print("  seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in visit.seconds.items()))

    assert visit.problems == {}
    assert visit.outside == []
    assert {path: status for path, status in refused.items() if status not in (403, 404)} == {}
    assert {path: seen for path, seen in read_only.items() if seen != (200, 0)} == {}
    if role == "viewer":
        assert "Import" not in [label for label, _ in links]
    assert reverse("dashboard:overview") in offered and reverse("dashboard:home") in offered
