"""The KPI API agrees with SPEC.md's definitions, computed by brute force, on random data it was not tuned to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from finops.ledger.models import Agent
from tests.ledger.reference import PUBLISHED_RATES, Outcome, reference_kpis

MODELS = [*PUBLISHED_RATES, ("acme", "acme-large-2")]  # the last one has no price anywhere
MICRO = Decimal("0.000001")


def random_traffic(seed: int) -> tuple[list[dict], list[Outcome]]:
    rng = random.Random(seed)
    begin = datetime(2026, 9, 25, tzinfo=UTC)
    events: list[dict] = []
    outcomes: list[Outcome] = []
    agents = [("support", "triage"), ("support", "refunds"), ("coding", "reviewer"), ("research", "scout")]
    for number in range(120):
        team, agent = rng.choice(agents)
        started = begin + timedelta(minutes=rng.randrange(0, 60 * 24 * 35))
        provider, model = rng.choice(MODELS)
        steps = rng.randint(1, 12)
        moment = started
        for step in range(1, steps + 1):
            moment += timedelta(minutes=rng.randint(1, 400))  # tasks may straddle window edges
            context = 2000 * step
            cached = rng.randint(0, context)
            events.append(
                {
                    "event_id": f"{team}:{number}:{step}",
                    "timestamp": moment.isoformat(),
                    "team": team,
                    "agent": agent,
                    "task_id": f"run-{number}",
                    "step": step,
                    "provider": provider,
                    "model": model,
                    "usage": {
                        "uncached_input": context - cached,
                        "cache_read": cached,
                        "cache_write_5m": rng.choice([0, 0, 500]),
                        "cache_write_1h": rng.choice([0, 0, 0, 800]),
                        "output": rng.randint(10, 900),
                        "reasoning": rng.choice([0, 0, rng.randint(0, 3000)]),
                    },
                    "batch": rng.random() < 0.1,
                }
            )
        if rng.random() < 0.9:  # some runs never report an outcome
            outcomes.append(
                Outcome(
                    team=team,
                    task_id=f"run-{number}",
                    agent=agent,
                    status=rng.choices(["success", "failure", "abandoned", "killed"], [7, 2, 1, 1])[0],
                    ended_at=moment + timedelta(seconds=rng.randint(1, 90)),
                    ideal_steps=rng.choice([None, None, 3, 5]),
                )
            )
    for number in range(60):  # calls outside any task
        team, agent = rng.choice(agents)
        provider, model = rng.choice(MODELS)
        events.append(
            {
                "event_id": f"loose-{number}",
                "timestamp": (begin + timedelta(minutes=rng.randrange(0, 60 * 24 * 35))).isoformat(),
                "team": team,
                "agent": agent,
                "provider": provider,
                "model": model,
                "usage": {"uncached_input": rng.randint(100, 5000), "output": rng.randint(1, 400)},
            }
        )
    return events, outcomes


def as_wire(value):
    return None if value is None else str(value.quantize(MICRO, ROUND_HALF_EVEN))


@pytest.fixture
def traffic(api):
    events, outcomes = random_traffic(seed=20261122)
    for offset in range(0, len(events), 250):
        response = api.post("/api/v1/events", events[offset : offset + 250])
        assert response.status_code == 200
        assert response.json()["rejected"] == []
    # an agent-level ideal, used where a task has none of its own
    Agent.objects.filter(team__slug="support", name="triage").update(ideal_steps=4)
    body = [
        {
            "task_id": o.task_id,
            "team": o.team,
            "agent": o.agent,
            "status": o.status,
            "started_at": (o.ended_at - timedelta(hours=1)).isoformat(),
            "ended_at": o.ended_at.isoformat(),
            **({"ideal_steps": o.ideal_steps} if o.ideal_steps else {}),
        }
        for o in outcomes
    ]
    assert api.post("/api/v1/tasks", body).status_code == 200
    return events, outcomes


WINDOWS = [
    (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),  # whole month: rollups only
    (datetime(2026, 10, 3, 7, 30, tzinfo=UTC), datetime(2026, 10, 19, 15, 45, tzinfo=UTC)),  # ragged edges
    (datetime(2026, 10, 7, 5, 0, tzinfo=UTC), datetime(2026, 10, 8, 20, 0, tzinfo=UTC)),  # no whole day
    (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),  # across partitions
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
@pytest.mark.parametrize(("team", "agent"), [(None, None), ("support", None), ("support", "triage")])
def test_kpi_api_matches_the_definitions(api, traffic, start, end, team, agent):
    events, outcomes = traffic
    expected = reference_kpis(
        events=events,
        outcomes=outcomes,
        start=start,
        end=end,
        agent_ideal={("support", "triage"): 4},
        team=team,
        agent=agent,
    )
    params = {"start": start.isoformat(), "end": end.isoformat()}
    if team:
        params["team"] = team
    if agent:
        params["agent"] = agent
    response = api.get("/api/v1/kpis", **params)
    assert response.status_code == 200, response.json()
    body = response.json()

    assert expected["calls"] > 0  # the window holds data: the comparison means something
    assert body["scope"] == {"team": team, "agent": agent}
    assert body["cost_usd"] == as_wire(expected["cost_usd"])
    assert body["calls"] == expected["calls"]
    assert body["unpriced_calls"] == expected["unpriced_calls"]
    assert body["calls_not_in_task"] == expected["calls_not_in_task"]
    assert body["tokens"] == expected["tokens"]
    assert body["tasks"] == expected["tasks"]
    assert body["cost_per_successful_task_usd"] == as_wire(expected["cost_per_successful_task_usd"])
    for ratio in ("cache_hit_rate", "token_efficiency_index", "step_inflation_ratio"):
        if expected[ratio] is None:
            assert body[ratio] is None, ratio
        else:
            assert body[ratio] == pytest.approx(expected[ratio], abs=1e-6), ratio


def test_retrying_every_batch_changes_no_kpi(api, traffic):
    events, _ = traffic
    before = api.get("/api/v1/kpis", start="2026-09-01T00:00:00Z", end="2026-12-01T00:00:00Z").json()
    for offset in range(0, len(events), 333):  # different batch boundaries than the first delivery
        body = api.post("/api/v1/events", events[offset : offset + 333]).json()
        assert body["accepted"] == 0
        assert body["duplicates"] == len(events[offset : offset + 333])
    after = api.get("/api/v1/kpis", start="2026-09-01T00:00:00Z", end="2026-12-01T00:00:00Z").json()
    assert after == before
