"""A ledger of the last days, for the pages that read this month and the last 30 days (the homes),
with what a brute force needs: the events sent, and helpers to sign in and read a CSV export.
`recent` is registered in conftest.py."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from finops.accounts.models import Membership, User
from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.services import rule_create
from finops.guardrails.services import allowance_create
from finops.ledger.services import task_outcomes_record
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest
from tests.dashboard.conftest import PROVIDER, RATES, UNPRICED_MODEL, expected_cost
from tests.dashboard.test_alerts_pages import person
from tests.factories import AgentFactory, TeamFactory


def member(username: str, *teams_and_roles) -> User:
    user = person(username)
    for team, role in teams_and_roles:
        Membership.objects.create(user=user, team=team, role=role)
    return user


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
