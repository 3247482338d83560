"""Home per role (issue 9): each role, signing in, lands on its answer; the numbers there are the ones a
brute force over the events gives. The navigation offers each role its pages, a team switcher to people
of several teams, and names the one team of a one-team person."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from finops.accounts.models import Membership, User
from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.services import rule_create
from finops.guardrails.services import allowance_create
from finops.ledger.services import task_outcomes_record
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest
from tests.dashboard.conftest import PROVIDER, RATES, UNPRICED_MODEL, expected_cost
from tests.factories import AgentFactory, TeamFactory


def person(username: str, **fields) -> User:
    return User.objects.create(username=username, **fields)


def member(username: str, *teams_and_roles) -> User:
    user = person(username)
    for team, role in teams_and_roles:
        Membership.objects.create(user=user, team=team, role=role)
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200, response.content[:400]
    body = b"".join(response.streaming_content).decode()
    head, *rows = list(csv.reader(io.StringIO(body)))
    return [dict(zip(head, row, strict=True)) for row in rows]


class Recent:
    """Events of the last days (the homes read this month and the last 30 days), kept for brute force."""

    def __init__(self, now: datetime):
        self.now = now
        self.events: list[dict] = []

    def add(self, event_id, *, ago: timedelta, team, agent, model="m1", task_id=None, version=None, **usage):
        self.events.append(
            {
                "event_id": event_id,
                "timestamp": (self.now - ago).isoformat().replace("+00:00", "Z"),
                "team": team,
                "agent": agent,
                "task_id": task_id,
                "provider": PROVIDER,
                "model": model,
                "prompt_version": version,
                "usage": usage,
            }
        )

    def moment(self, event) -> datetime:
        return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))

    def cost(self, event) -> Decimal | None:
        return None if event["model"] == UNPRICED_MODEL else expected_cost(event["model"], event["usage"])

    def select(self, *, since: datetime | None = None, **match) -> list[dict]:
        return [
            event
            for event in self.events
            if all(event[key] == value for key, value in match.items())
            and (since is None or self.moment(event) >= since)
        ]

    def spend(self, **match) -> Decimal:
        return sum((self.cost(event) or Decimal(0) for event in self.select(**match)), Decimal(0))


@pytest.fixture
def recent(db):
    for model, rates in RATES.items():
        ModelPriceOverride.objects.create(
            provider=PROVIDER,
            model=model,
            effective_from=datetime(2024, 1, 1, tzinfo=UTC),
            **{f"{token_type}_per_mtok": rate for token_type, rate in rates.items()},
        )
    support = TeamFactory(slug="support", name="Support")
    billing = TeamFactory(slug="billing", name="Billing")
    triage = AgentFactory(team=support, name="triage", cost_slo_usd=Decimal("0.50"))
    writer = AgentFactory(team=support, name="writer", cost_slo_usd=Decimal("5.00"))
    collector = AgentFactory(team=billing, name="collector")
    # an allowance first: the writer counts the calls into its window as it stores them
    allowance = allowance_create(
        principal=None, team=support, agent=None, window="month", limit_usd=Decimal("4.00")
    )
    now = timezone.now().replace(microsecond=0)
    data = Recent(now)
    minute, day = timedelta(minutes=1), timedelta(days=1)
    # triage: t1 success on prompt v1 (0.48 + 0.49), t2 success on v2 (3 x 0.22), 12 days ago and today
    data.add(
        "t1-1",
        ago=12 * day,
        team="support",
        agent="triage",
        task_id="t1",
        version="v1",
        uncached_input=100_000,
        cache_read=900_000,
        output=10_000,
    )
    data.add(
        "t1-2",
        ago=12 * day,
        team="support",
        agent="triage",
        task_id="t1",
        version="v1",
        uncached_input=50_000,
        cache_read=950_000,
        output=20_000,
    )
    for step in (1, 2, 3):
        data.add(
            f"t2-{step}",
            ago=30 * minute,
            team="support",
            agent="triage",
            model="m2",
            task_id="t2",
            version="v2",
            uncached_input=200_000,
            output=5_000,
        )
    # writer: a running task (no outcome, last call 2 minutes ago) at 3.80, past the $1 runaway rule
    data.add(
        "r1-1",
        ago=2 * minute,
        team="support",
        agent="writer",
        task_id="run-1",
        version="w1",
        uncached_input=1_000_000,
        cache_write_5m=400_000,
        output=50_000,
        reasoning=30_000,
    )
    # writer, a model nobody priced: twice today, once 3 days ago
    for number, ago in enumerate((3 * minute, 4 * minute, 3 * day)):
        data.add(
            f"u-{number}",
            ago=ago,
            team="support",
            agent="writer",
            model=UNPRICED_MODEL,
            uncached_input=10_000,
            output=1_000,
        )
    # billing: 10.00 five minutes ago, 2.00 five days ago, and 7.00 forty days ago (outside every window)
    data.add("b1", ago=5 * minute, team="billing", agent="collector", task_id="b1", uncached_input=5_000_000)
    data.add("b2", ago=5 * day, team="billing", agent="collector", uncached_input=1_000_000)
    data.add("b3", ago=40 * day, team="billing", agent="collector", model="m2", uncached_input=7_000_000)
    # fmt: skip
    result = events_ingest(raw_events=data.events, principal=None, source="test")
    assert result.accepted == len(data.events), result.rejected
    task_outcomes_record(
        outcomes=[
            {"team": support, "agent": triage, "task_id": "t1", "status": "success",
             "started_at": now - 12 * day - minute, "ended_at": now - 12 * day + minute},
            {"team": support, "agent": triage, "task_id": "t2", "status": "success",
             "started_at": now - 31 * minute, "ended_at": now - 29 * minute},
            {"team": billing, "agent": collector, "task_id": "b1", "status": "failure",
             "started_at": now - 6 * minute, "ended_at": now - 4 * minute},
        ]
    )  # fmt: skip
    rule = rule_create(
        principal=person("root", is_superuser=True),
        name="runaway support",
        team=support,
        kind="runaway_task",
        metric="cost_usd",
        value=Decimal("1.00"),
    )
    alerts_evaluate()
    data.teams = {"support": support, "billing": billing}
    data.agents = {"triage": triage, "writer": writer, "collector": collector}
    data.allowance, data.rule = allowance, rule
    return data


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
    client = client_for(person("fran", org_role="finops"))
    page = client.get("/home/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Spend against budgets" in text and "Not yet reconciled" in text
    budgets = {row["Team"]: row for row in rows_of(client.get("/home/", {"export": "budgets"}))}
    start = month_start(recent.now)
    today = recent.now.replace(hour=0, minute=0, second=0)
    next_month = (start + timedelta(days=32)).replace(day=1)
    days_left = Decimal((next_month - recent.now).total_seconds()) / Decimal(86_400)
    for slug in ("billing", "support"):
        month = recent.spend(team=slug, since=start)
        assert Decimal(budgets[slug]["Month to date"]) == month
        week = sum(
            (
                recent.cost(event) or Decimal(0)
                for event in recent.select(team=slug, since=today - timedelta(days=7))
                if recent.moment(event) < today
            ),
            Decimal(0),
        )
        forecast = Decimal(budgets[slug]["Forecast month end"])
        # the page took its clock a moment after this test's: a minute's worth of the daily rate at most
        assert (
            month + week / 7 * (days_left - Decimal(60) / 86_400) <= forecast <= month + week / 7 * days_left
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


def test_tech_lead_home_shows_each_prompt_version_with_its_cache_hit_rate_and_cost_per_task(recent):
    client = client_for(member("tess", (recent.teams["support"], "tech_lead")))
    rows = rows_of(client.get("/home/", {"export": "prompt-versions"}))
    assert [(row["Agent"], row["Prompt version"]) for row in rows] == [
        ("triage", "v2"),
        ("triage", "v1"),
        ("writer", "w1"),
    ]
    for row in rows:
        events = recent.select(prompt_version=row["Prompt version"])
        inputs = sum(
            event["usage"].get(kind, 0)
            for event in events
            for kind in ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
        )
        cache_read = sum(event["usage"].get("cache_read", 0) for event in events)
        assert int(row["Calls"]) == len(events)
        assert float(row["Cache hit rate"]) == pytest.approx(cache_read / inputs)
        tasks = {event["task_id"] for event in events}
        assert Decimal(row["$ per task"]) == sum(recent.cost(event) for event in events) / len(tasks)


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


@pytest.mark.parametrize(
    ("role", "offered"),
    [
        ("viewer", ["Home", "Overview", "Guardrails", "Alerts", "API docs"]),
        ("pm", ["Home", "Overview", "Guardrails", "Alerts", "Audit", "Import", "Quarantine", "API docs"]),
        (
            "sre",
            [
                "Home",
                "Overview",
                "Guardrails",
                "Alerts",
                "Rules",
                "Audit",
                "Import",
                "Quarantine",
                "API docs",
            ],
        ),
    ],
)
def test_the_navigation_offers_a_role_what_it_may_use(recent, role, offered):
    client = client_for(member(f"n-{role}", (recent.teams["support"], role)))
    assert nav_labels(client.get("/guardrails/").content.decode()) == offered


def test_finops_is_offered_connectors_and_the_admin(recent):
    text = client_for(person("fin", org_role="finops")).get("/guardrails/").content.decode()
    assert nav_labels(text)[-3:] == ["Connectors", "API docs", "Admin"]


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
