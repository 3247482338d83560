"""Each dashboard page takes a fixed number of queries (issue 9, "Speed at 10M calls"): pinned here, and
the same again after more teams' worth of agents, runs, rules, alerts, deliveries, allowances and
silences are added, so a query per row (N+1) fails the test instead of slowing the page at 10M calls."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.urls import urlpatterns
from finops.alerts.models import Alert, Delivery
from finops.alerts.services import channel_create, rule_create, silence_create
from finops.guardrails.services import allowance_create
from finops.ledger.models import Task
from finops.ledger.services import task_outcomes_record
from finops.pricing.models import RepriceDelta
from finops.pricing.prices import discount_create, price_override_create
from ingest.writer import events_ingest
from tests.dashboard.conftest import event, moment
from tests.factories import AgentFactory, TeamFactory, UserFactory

MARCH = "?start=2025-03-01&end=2025-03-31"
# page → (path, queries pinned); a path's {ids} are the first team's objects. Signed in as admin: the
# navigation's team switcher lists every team (one query), its firing count one more
PAGES = {
    "overview": ("/" + MARCH, 12),
    "agent": ("/agents/{agent}/" + MARCH, 13),
    "task": ("/tasks/{task}/", 6),
    "alerts": ("/alerts/", 13),
    "alert-detail": ("/alerts/{alert}/", 7),
    "rules": ("/alerts/rules/", 10),
    "rule-edit": ("/alerts/rules/{rule}/", 10),
    "guardrails": ("/guardrails/", 10),
    "allowance-edit": ("/guardrails/allowances/{allowance}/", 9),
    "audit": ("/audit/", 7),
    "home": ("/home/", 9),  # the forecast: two grouped rollup reads; last month closed or not
    "models": ("/models/" + MARCH, 9),
    "caching": ("/caching/" + MARCH, 9),
    "breakdown": ("/breakdown/" + MARCH, 8),
    "forecast": ("/forecast/", 8),
    # the month's telemetry and calls (two rollup reads), the statement (cost, usage, invoice), closed
    # months' late events, the lines' ids, the month's state and the providers (and whether that month is
    # closed: its telemetry is then its snapshot)
    "reconciliation": ("/bills/reconciliation/?provider=acme&month=2025-03", 15),
    "months": ("/months/?month=2025-03", 19),  # the chargeback: per provider its bases, then one read each
    "prices": ("/prices/", 7),
    "reprice-runs": ("/prices/runs/", 5),
    "reprice-run": ("/prices/runs/{reprice_run}/", 6),
}


def team_objects_add(number: int, *, admin) -> dict:
    """A team with two agents, three runs (one still running), a rule, two alerts with a delivery,
    an allowance and a silence."""
    team = TeamFactory(slug=f"team-{number}")
    agents = [AgentFactory(team=team, name=f"agent-{number}-{index}", ideal_steps=2) for index in range(2)]
    events = [
        event(
            f"{team.slug}-{run}-{step}",
            day=f"2025-03-{10 + run:02d}",
            team=team.slug,
            agent=agents[run % 2].name,
            task_id=f"{team.slug}-run-{run}",
            uncached_input=1000 * step,
            output=100,
        )
        for run in range(3)
        for step in range(1, 3)
    ]
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == len(events)
    task_outcomes_record(
        outcomes=[
            {
                "team": team,
                "agent": agents[run % 2],
                "task_id": f"{team.slug}-run-{run}",
                "status": ("success", "failure")[run],
                "started_at": moment(f"2025-03-{10 + run:02d}", 9),
                "ended_at": moment(f"2025-03-{10 + run:02d}", 18),
            }
            for run in range(2)
        ]
    )
    channel, _ = channel_create(
        principal=admin,
        team=team,
        kind="webhook",
        target=f"https://hooks.example/{team.slug}",
        name=team.slug,
    )
    rule = rule_create(
        principal=admin,
        name=f"{team.slug} runaway",
        team=team,
        agent=agents[0],
        kind="runaway_task",
        metric="cost_usd",
        value=Decimal("5"),
        channels=[channel],
    )
    now = timezone.now()
    alerts = [
        Alert.objects.create(
            rule=rule,
            team=team,
            subject=f"task:{team.slug}/run-{index}",
            state=state,
            value=Decimal("7"),
            threshold=Decimal("5"),
            started_at=now - timedelta(hours=2),
            fired_at=now - timedelta(hours=2),
            resolved_at=now - timedelta(hours=1) if state == "resolved" else None,
            last_evaluated_at=now,
        )
        for index, state in enumerate(["firing", "resolved"])
    ]
    Delivery.objects.create(
        alert=alerts[0],
        channel=channel,
        team=team,
        event="alert.firing",
        payload={},
        status="failed",
        attempts=2,
    )
    allowance = allowance_create(
        principal=admin, team=team, agent=agents[1], window="day", limit_usd=Decimal(9)
    )
    silence_create(principal=admin, team=team, ends_at=now + timedelta(hours=2), reason=f"{team.slug} deploy")
    # prices and a re-pricing run with a before/after row of this team (the Prices pages)
    _, run = price_override_create(
        principal=admin,
        provider=f"p{number}",
        model="m",
        effective_from=now - timedelta(days=3),
        uncached_input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(2),
    )
    discount_create(principal=admin, provider=f"p{number}", percent=Decimal(5), effective_from=now)
    RepriceDelta.objects.create(
        run=run,
        team=team,
        provider=f"p{number}",
        model="m",
        day=now.date(),
        before_usd=1,
        after_usd=2,
        calls=3,
    )
    return {
        "reprice_run": run.pk,
        "agent": agents[0].pk,
        "task": Task.objects.get(team=team, task_id=f"{team.slug}-run-0").pk,
        "alert": alerts[0].pk,
        "rule": rule.pk,
        "allowance": allowance.pk,
    }


def queries_of(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(queries)


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_takes_a_fixed_number_of_queries(client, db, page):
    """Every page of dashboard/urls.py that answers GET (the others only take POSTs)."""
    admin = UserFactory(username="admin", is_superuser=True, is_staff=True)
    client.force_login(admin)
    ids = team_objects_add(0, admin=admin)
    path, pinned = PAGES[page]
    path = path.format(**ids)
    client.get(path)  # the first request of a session loads what later ones find cached
    first = queries_of(client, path)
    for number in range(1, 4):
        team_objects_add(number, admin=admin)
    client.get(path)  # the added prices change the price book: the first request after reloads it once
    assert queries_of(client, path) == first, "a query per row: the count grew with the rows"
    assert first == pinned


def test_every_page_that_answers_get_is_pinned(client, db):
    """A page added to dashboard/urls.py gets its count above: the others answer GET with 405."""
    client.force_login(UserFactory(username="admin", is_superuser=True, is_staff=True))
    for pattern in urlpatterns:
        if pattern.name not in PAGES:
            kwargs = dict.fromkeys(re.findall(r"<int:(\w+)>", str(pattern.pattern)), 1)
            path = reverse(f"dashboard:{pattern.name}", kwargs=kwargs)
            assert client.get(path).status_code == 405, f"{pattern.name} answers GET: pin its queries"
