"""Home per role (issue 9): each role, signing in, lands on its answer; the numbers there are the ones a
brute force over the events gives. The navigation offers each role its pages, a team switcher to people
of several teams, and names the one team of a one-team person."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from finops.accounts.models import Team
from ingest.writer import events_ingest
from tests.dashboard.conftest import PROVIDER, UNPRICED_MODEL
from tests.dashboard.recent_ledger import member, rows_of
from tests.dashboard.test_alerts_pages import client_for, person


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- homes ----------------------------------------------------------------------------------------


def test_login_lands_on_the_home(recent):
    user = member("sally", (recent.teams["support"], "sre"))
    user.set_password("a-long-password-1")
    user.save()
    client = Client()
    answer = client.post("/login/", {"username": "sally", "password": "a-long-password-1"})
    assert answer.status_code == 302 and answer["Location"] == "/home/"
    assert "Guardrails and alerts" in client.get("/home/").content.decode()
    # the Overview keeps its address for bookmarks
    assert "<h1>Overview" in client.get("/").content.decode()


def test_finops_home_shows_each_team_against_its_budget_and_by_provider(recent):
    Team.objects.filter(slug="billing").update(monthly_budget_usd=Decimal("15.00"))
    client = client_for(person("fran", org_role="finops"))
    page = client.get("/home/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Spend against budgets" in text and 'id="last-month-state">Not closed yet' in text
    assert 'href="/months/?month=' in text
    assert 'href="/forecast/?team=billing"' in text
    budgets = {row["Team"]: row for row in rows_of(client.get("/home/", {"export": "budgets"}))}
    start = month_start(recent.now)
    next_month = (start + timedelta(days=32)).replace(day=1)
    for slug in ("billing", "support"):
        month = recent.spend(team=slug, since=start)
        assert Decimal(budgets[slug]["Month to date"]) == month
        # the trailing 7 days' mean for each day left; the page's clock ran a little after the test's,
        # and reads to the end of its minute: a minute or two of the daily rate either way
        rate = recent.spend(team=slug, since=recent.now - timedelta(days=7)) / 7
        days_left = Decimal((next_month - recent.now).total_seconds()) / Decimal(86_400)
        slack = rate * Decimal(180) / Decimal(86_400)
        forecast = Decimal(budgets[slug]["Forecast month end"])
        assert month + rate * days_left - slack <= forecast <= month + rate * days_left + slack
        assert Decimal(budgets[slug]["Band low"]) <= forecast <= Decimal(budgets[slug]["Band high"])
    assert budgets["support"]["Monthly budget"] == "" and budgets["support"]["Status"] == "no budget"
    billing = budgets["billing"]
    assert Decimal(billing["Monthly budget"]) == Decimal("15.00")
    assert Decimal(billing["Forecast ÷ budget"]) == Decimal(billing["Forecast month end"]) / Decimal("15.00")
    projected, high = Decimal(billing["Forecast month end"]), Decimal(billing["Band high"])
    assert billing["Status"] == (
        "over budget" if projected > 15 else "may pass budget" if high > 15 else "within budget"
    )
    by_provider = rows_of(client.get("/home/", {"export": "spend-by-provider"}))
    assert [(row["Team"], row["Provider"]) for row in by_provider] == [
        ("billing", PROVIDER),
        ("support", PROVIDER),
    ]
    assert Decimal(by_provider[1]["Month to date"]) == recent.spend(team="support", since=start)
    assert int(by_provider[1]["Unpriced calls"]) == len(
        recent.select(team="support", model=UNPRICED_MODEL, since=start)
    )


def test_sre_home_shows_allowances_alerts_runaway_tasks_and_unpriced_calls(recent):
    client = client_for(member("sam", (recent.teams["support"], "sre")))
    text = client.get("/home/").content.decode()
    assert "Guardrails and alerts" in text and 'href="/guardrails/"' in text and 'href="/alerts/"' in text
    assert "billing" not in text and "collector" not in text  # another team's

    (allowance,) = rows_of(client.get("/home/", {"export": "allowances"}))
    used = recent.spend(team="support", since=month_start(recent.now))
    assert Decimal(allowance["Used $"]) == used and allowance["Limit $"] == "4.000000"
    assert Decimal(allowance["Used"]) == used / Decimal(4)
    assert allowance["Status"] == ("over" if used >= 4 else "near" if used >= Decimal("3.2") else "ok")

    (runaway,) = rows_of(client.get("/home/", {"export": "runaway-tasks"}))
    assert runaway["Task"] == "run-1" and runaway["Past rules"] == "runaway support"
    assert Decimal(runaway["Cost so far"]) == recent.spend(task_id="run-1")

    (alert,) = rows_of(client.get("/home/", {"export": "open-alerts"}))
    assert (alert["Alert"], alert["State"], alert["Subject"]) == (
        "runaway support",
        "firing",
        "task:support/run-1",
    )

    unpriced = rows_of(client.get("/home/", {"export": "unpriced-calls"}))
    assert [(row["Agent"], row["Model"], int(row["Unpriced calls"])) for row in unpriced] == [
        ("writer", UNPRICED_MODEL, len(recent.select(model=UNPRICED_MODEL)))
    ]


def test_tech_lead_home_shows_each_prompt_version_over_the_last_30_utc_days(recent):
    # the window is the last 30 UTC days, today included: a v1 call just inside its first midnight (in
    # no task) counts, one just before it does not; an unpriced w1 call is counted, never priced at $0,
    # and w0, whose one call (in a task) is unpriced, has an unknown cost, not $0
    first_day = datetime.combine(recent.now.astimezone(UTC).date() - timedelta(days=29), time(0), UTC)
    more = len(recent.events)
    recent.add(
        "edge-in",
        ago=recent.now - first_day - timedelta(seconds=30),
        team="support",
        agent="triage",
        version="v1",
        uncached_input=40_000,
        cache_read=60_000,
        output=900,
    )
    recent.add(
        "edge-out",
        ago=recent.now - first_day + timedelta(seconds=30),
        team="support",
        agent="triage",
        task_id="t0",
        version="v1",
        uncached_input=70_000,
        cache_read=5_000,
    )
    recent.add(
        "w-unpriced",
        ago=timedelta(minutes=1),
        team="support",
        agent="writer",
        model=UNPRICED_MODEL,
        version="w1",
        uncached_input=3_000,
        output=100,
    )
    recent.add(
        "w0-unpriced",
        ago=timedelta(seconds=90),
        team="support",
        agent="writer",
        model=UNPRICED_MODEL,
        task_id="run-0",
        version="w0",
        uncached_input=2_000,
        cache_read=8_000,
    )
    assert events_ingest(raw_events=recent.events[more:], principal=None, source="test").accepted == 4
    client = client_for(member("tess", (recent.teams["support"], "tech_lead")))
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/home/")
    assert page.status_code == 200 and "Prompt versions" in page.content.decode()
    assert not [query["sql"] for query in queries if re.search(r"\bledger_call\b", query["sql"])]
    rows = rows_of(client.get("/home/", {"export": "prompt-versions"}))
    assert [(row["Agent"], row["Prompt version"]) for row in rows] == [
        ("triage", "v2"),
        ("triage", "v1"),
        ("writer", "w0"),
        ("writer", "w1"),
    ]

    def money(text: str) -> Decimal | None:
        return None if text == "" else Decimal(text)

    for row in rows:
        events = recent.select(prompt_version=row["Prompt version"], since=first_day)
        inputs = sum(
            event["usage"].get(kind, 0)
            for event in events
            for kind in ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
        )
        cache_read = sum(event["usage"].get("cache_read", 0) for event in events)
        priced = [recent.cost(event) for event in events if recent.cost(event) is not None]
        in_tasks = [event for event in events if event["task_id"]]
        priced_in_tasks = [recent.cost(event) for event in in_tasks if recent.cost(event) is not None]
        assert int(row["Calls"]) == len(events)
        moments = [recent.moment(event) for event in events]
        assert datetime.fromisoformat(row["First call (UTC)"]) == min(moments)
        assert datetime.fromisoformat(row["Last call (UTC)"]) == max(moments)
        assert float(row["Cache hit rate"]) == pytest.approx(cache_read / inputs)
        assert money(row["Cost"]) == (sum(priced) if priced else None)
        assert money(row["$ per call"]) == (sum(priced) / len(priced) if priced else None)
        assert int(row["Calls in tasks"]) == len(in_tasks)
        assert money(row["Cost in tasks"]) == (
            sum(priced_in_tasks) if priced_in_tasks or not in_tasks else None
        )
        assert int(row["Unpriced calls"]) == len(events) - len(priced)
    by_version = {row["Prompt version"]: row for row in rows}
    assert int(by_version["v1"]["Calls"]) == 3 and int(by_version["v1"]["Calls in tasks"]) == 2
    assert int(by_version["w1"]["Unpriced calls"]) == 1 and by_version["w1"]["Cost"] != ""
    assert (
        by_version["w0"]["Cost"] == by_version["w0"]["Cost in tasks"] == by_version["w0"]["$ per call"] == ""
    )
    assert int(by_version["w0"]["Calls in tasks"]) == 1


def test_pm_home_shows_agents_against_their_cost_slo(recent):
    client = client_for(member("pat", (recent.teams["support"], "pm")))
    text = client.get("/home/").content.decode()
    triage = recent.agents["triage"]
    assert f'href="/agents/{triage.pk}/"' in text
    rows = {row["Agent"]: row for row in rows_of(client.get("/home/", {"export": "agents-slo"}))}
    assert set(rows) == {"triage", "writer"}
    # t1 and t2 both succeeded within 30 days; every call of each counts
    per_success = (recent.spend(task_id="t1") + recent.spend(task_id="t2")) / 2
    assert Decimal(rows["triage"]["$ per successful task"]) == per_success
    assert rows["triage"]["Status"] == ("over SLO" if per_success > Decimal("0.5") else "within SLO")
    assert rows["writer"]["Status"] == "no successful task"  # run-1 is still running


def test_ml_home_shows_models_by_spend(recent):
    client = client_for(member("mo", (recent.teams["billing"], "ml")))
    assert 'href="/models/"' in client.get("/home/").content.decode()
    *rows, foot = rows_of(client.get("/home/", {"export": "models"}))
    since = recent.now.replace(hour=0, minute=0, second=0) - timedelta(days=29)
    # billing's calls of the last 30 days only: b3 is forty days old, support's are another team's
    assert [(row["Model"], Decimal(row["Spend"])) for row in rows] == [
        ("m1", recent.spend(team="billing", since=since)),
    ]
    assert Decimal(rows[0]["Share of spend"]) == 1
    assert (foot["Provider"], Decimal(foot["Spend"])) == (
        "All models",
        recent.spend(team="billing", since=since),
    )


def test_a_model_with_no_price_shows_no_spend_never_zero(recent):
    """Every call of the unpriced model has no cost: its spend is unknown ("—"; empty in the CSV), not $0."""
    client = client_for(member("ula", (recent.teams["support"], "ml")))
    rows = {row["Model"]: row for row in rows_of(client.get("/home/", {"export": "models"}))}
    since = recent.now.replace(hour=0, minute=0, second=0) - timedelta(days=29)
    unpriced = len(recent.select(team="support", model=UNPRICED_MODEL, since=since))
    assert unpriced > 0
    assert (rows[UNPRICED_MODEL]["Spend"], rows[UNPRICED_MODEL]["Share of spend"]) == ("", "")
    assert int(rows[UNPRICED_MODEL]["Unpriced calls"]) == int(rows[UNPRICED_MODEL]["Calls"]) == unpriced
    assert Decimal(rows["m1"]["Spend"]) > 0
    assert "$0.00" not in client.get("/home/").content.decode()


def test_viewer_home_is_the_team_overview(recent):
    client = client_for(member("vic", (recent.teams["support"], "viewer")))
    answer = client.get("/home/")
    assert answer.status_code == 302 and answer["Location"] == "/"


def test_several_roles_land_on_the_highest_with_links_to_the_others(recent):
    client = client_for(member("max", (recent.teams["support"], "pm"), (recent.teams["billing"], "sre")))
    text = client.get("/home/").content.decode()
    assert "Guardrails and alerts" in text and 'href="?as=pm"' in text
    pm = rows_of(client.get("/home/", {"as": "pm", "export": "agents-slo"}))
    assert {row["Team"] for row in pm} == {"support"}  # pm of support only, not of billing
    refused = client.get("/home/", {"as": "ml"})
    assert (
        refused.status_code == 400
        and refused.content.decode() == "as=ml: not a role you hold (yours: sre, pm)\n"
    )
    # choosing a team shows the home of the role held there
    assert "Agents against their cost SLO" in client.get("/home/", {"team": "support"}).content.decode()
    assert client.get("/home/", {"team": "nowhere"}).status_code == 404


# --- navigation -----------------------------------------------------------------------------------


def nav_labels(text: str) -> list[str]:
    import re

    nav = text[text.index('<nav class="mainnav"') : text.index("</nav>")]
    labels = re.findall(r'<a href="[^"]*"[^>]*>(.*?)</a>', nav)
    # the label without its badge (a count of firing alerts)
    return [re.sub(r"<span class=\"badge\"[^>]*>\d+</span>", "", label).strip() for label in labels]


READ_PAGES = ["Home", "Overview", "Models", "Caching", "Breakdown", "Forecast", "Guardrails", "Alerts"]


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        ("viewer", [*READ_PAGES, "API docs"]),
        ("pm", [*READ_PAGES, "Audit", "Import", "Quarantine", "API docs"]),
        ("sre", [*READ_PAGES, "Rules", "Audit", "Import", "Quarantine", "API docs"]),
    ],
)
def test_the_navigation_offers_a_role_what_it_may_use(recent, role, offered):
    client = client_for(member(f"n-{role}", (recent.teams["support"], role)))
    assert nav_labels(client.get("/guardrails/").content.decode()) == offered


def test_finops_is_offered_reconciliation_connectors_invoices_prices_and_the_admin(recent):
    text = client_for(person("fin", org_role="finops")).get("/guardrails/").content.decode()
    assert nav_labels(text)[-7:] == [
        "Reconciliation",
        "Months",
        "Connectors",
        "Invoices",
        "Prices",
        "API docs",
        "Admin",
    ]


def test_a_one_team_person_sees_the_team_named_on_every_page(recent):
    client = client_for(member("uno", (recent.teams["support"], "sre")))
    for path in ("/home/", "/guardrails/", "/alerts/", "/alerts/rules/", "/audit/", "/"):
        text = client.get(path).content.decode()
        assert (
            '<span class="nav-team" id="nav-team" title="your team">Support <span class="scope">support</span>'
            in text
        ), path
        assert 'id="team-switch"' not in text


def test_the_team_switcher_keeps_the_page_and_its_filters(recent):
    client = client_for(member("duo", (recent.teams["support"], "sre"), (recent.teams["billing"], "viewer")))
    text = client.get("/alerts/", {"state": "firing", "team": "billing"}).content.decode()
    switch = text[
        text.index('<form class="team-switch"') : text.index("</form>", text.index('class="team-switch"'))
    ]
    assert 'action="/alerts/"' in switch and '<input type="hidden" name="state" value="firing">' in switch
    assert '<option value="billing" selected>Billing (billing)</option>' in switch
    assert '<option value="support">Support (support)</option>' in switch
    # a page without a team filter switches to the home of that team
    text = client.get("/guardrails/").content.decode()
    assert 'action="/home/"' in text


def test_the_navigation_reads_memberships_once_per_page(recent):
    client = client_for(member("once", (recent.teams["support"], "sre"), (recent.teams["billing"], "pm")))
    for path in ("/alerts/", "/home/", "/"):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200
        reads = [query["sql"] for query in queries if 'FROM "accounts_membership"' in query["sql"]]
        assert len(reads) == 1, (path, reads)
