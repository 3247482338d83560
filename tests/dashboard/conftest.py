"""A small ledger with round numbers, so each test can work out the expected dollars by hand.

Prices are the organisation's own overrides for a made-up provider (the catalog does not know it), so
the expected costs below do not depend on the genai-prices snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from finops.ledger.services import task_outcomes_record
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

PROVIDER = "acme"
# $ per million tokens
RATES = {
    "m1": {
        "uncached_input": Decimal("2.00"),
        "cache_read": Decimal("0.20"),
        "cache_write_5m": Decimal("2.50"),
        "cache_write_1h": Decimal("4.00"),
        "output": Decimal("10.00"),
        "reasoning": Decimal("10.00"),
    },
    "m2": {
        "uncached_input": Decimal("1.00"),
        "cache_read": Decimal("0.10"),
        "cache_write_5m": Decimal("1.25"),
        "cache_write_1h": Decimal("2.00"),
        "output": Decimal("4.00"),
        "reasoning": Decimal("4.00"),
    },
}
UNPRICED_MODEL = "mystery-model"


def expected_cost(model: str, usage: dict[str, int]) -> Decimal:
    return sum(
        (
            Decimal(usage.get(token_type, 0)) * RATES[model][token_type] / 1_000_000
            for token_type in TOKEN_TYPES
        ),
        Decimal(0),
    )


def expected_cost_by_type(model: str, usage: dict[str, int]) -> dict[str, Decimal]:
    return {
        token_type: Decimal(usage.get(token_type, 0)) * RATES[model][token_type] / 1_000_000
        for token_type in TOKEN_TYPES
    }


@dataclass
class Ledger:
    events: list[dict] = field(default_factory=list)
    teams: dict = field(default_factory=dict)
    agents: dict = field(default_factory=dict)

    def priced(self, **match) -> list[dict]:
        return [
            event
            for event in self.events
            if event["model"] != UNPRICED_MODEL and all(event[key] == value for key, value in match.items())
        ]

    def spend(self, *, start: str = "2025-03-01", end: str = "2025-04-01", **match) -> Decimal:
        """Expected spend of the priced events matching `match` with timestamp in [start, end)."""
        return sum(
            (
                expected_cost(event["model"], event["usage"])
                for event in self.priced(**match)
                if start <= event["timestamp"][:10] < end
            ),
            Decimal(0),
        )


def event(event_id, *, day, team, agent, model="m1", task_id=None, **usage) -> dict:
    return {
        "event_id": event_id,
        "timestamp": f"{day}T12:00:00Z",
        "team": team,
        "agent": agent,
        "task_id": task_id,
        "provider": PROVIDER,
        "model": model,
        "usage": usage,
    }


def moment(day: str, hour: int = 13) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def ledger(db) -> Ledger:
    """March 2025: support (triage with tasks, writer without) and billing; one billing call in April."""
    for model, rates in RATES.items():
        ModelPriceOverride.objects.create(
            provider=PROVIDER,
            model=model,
            effective_from=datetime(2024, 1, 1, tzinfo=UTC),
            uncached_input_per_mtok=rates["uncached_input"],
            cache_read_per_mtok=rates["cache_read"],
            cache_write_5m_per_mtok=rates["cache_write_5m"],
            cache_write_1h_per_mtok=rates["cache_write_1h"],
            output_per_mtok=rates["output"],
            reasoning_per_mtok=rates["reasoning"],
        )
    support = TeamFactory(slug="support", name="Support")
    billing = TeamFactory(slug="billing", name="Billing")
    triage = AgentFactory(team=support, name="triage", cost_slo_usd=Decimal("0.50"), ideal_steps=2)
    writer = AgentFactory(team=support, name="writer")
    collector = AgentFactory(team=billing, name="collector", ideal_steps=1)
    events = [
        # support/triage, task t1 (success), two steps on 3 March: 0.48 + 0.49
        event("t1-1", day="2025-03-03", team="support", agent="triage", task_id="t1",
              uncached_input=100_000, cache_read=900_000, output=10_000),
        event("t1-2", day="2025-03-03", team="support", agent="triage", task_id="t1",
              uncached_input=50_000, cache_read=950_000, output=20_000),
        # support/triage, task t2 (failure), three steps on 4 March with the cheaper model: 3 x 0.22
        *(
            event(f"t2-{step}", day="2025-03-04", team="support", agent="triage", model="m2", task_id="t2",
                  uncached_input=200_000, output=5_000)
            for step in (1, 2, 3)
        ),
        # support/writer, not in a task: 2 + 1 + 0.5 + 0.3 = 3.80
        event("w-1", day="2025-03-05", team="support", agent="writer",
              uncached_input=1_000_000, cache_write_5m=400_000, output=50_000, reasoning=30_000),
        # support/writer, a model nobody has priced: unpriced, never $0
        event("w-2", day="2025-03-05", team="support", agent="writer", model=UNPRICED_MODEL,
              uncached_input=10_000, output=1_000),
        # billing/collector, task b1 (success): 10.00; and 2.00 in April
        event("b1-1", day="2025-03-04", team="billing", agent="collector", task_id="b1",
              uncached_input=5_000_000),
        event("b-april", day="2025-04-02", team="billing", agent="collector", uncached_input=1_000_000),
    ]  # fmt: skip
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert result.accepted == len(events), result.rejected
    task_outcomes_record(
        outcomes=[
            {"team": support, "agent": triage, "task_id": "t1", "status": "success",
             "started_at": moment("2025-03-03", 11), "ended_at": moment("2025-03-03")},
            {"team": support, "agent": triage, "task_id": "t2", "status": "failure",
             "started_at": moment("2025-03-04", 11), "ended_at": moment("2025-03-04")},
            {"team": billing, "agent": collector, "task_id": "b1", "status": "success",
             "started_at": moment("2025-03-04", 11), "ended_at": moment("2025-03-04")},
        ]
    )  # fmt: skip
    return Ledger(
        events=events,
        teams={"support": support, "billing": billing},
        agents={"triage": triage, "writer": writer, "collector": collector},
    )


@pytest.fixture
def support_member(ledger):
    member = UserFactory(username="sam", first_name="Sam", last_name="Support")
    MembershipFactory(user=member, team=ledger.teams["support"])
    return member


@pytest.fixture
def finops_user(db):
    return UserFactory(username="fran", org_role="finops")


# the last days' ledger of the homes and the exports (tests/dashboard/recent_ledger.py)
from tests.dashboard.recent_ledger import recent  # noqa: E402, F401
