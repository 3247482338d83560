"""The allowance counters the writer keeps equal a brute-force sum over the calls, after random batches
(retried batches, repeated events, late events, unpriced models, several windows and a non-UTC zone);
an allowance created mid-window counts the calls already made in it, once."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from finops.guardrails.models import Allowance, AllowanceUsage, Reservation
from finops.guardrails.services import allowance_create
from finops.guardrails.windows import window_bounds
from finops.ledger.models import Call
from finops.ledger.tokens import TOKEN_TYPES
from ingest.writer import events_ingest
from tests.factories import AgentFactory, TeamFactory

MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-4o"),
    ("acme", "acme-large-2"),
]  # acme: unpriced


def random_events(rng: random.Random, *, now: datetime, count: int, prefix: str) -> list[dict]:
    events = []
    for number in range(count):
        provider, model = rng.choice(MODELS)
        team, agent = rng.choice([("support", "triage"), ("support", "refunds"), ("search", "ranker")])
        age = timedelta(minutes=rng.randrange(0, 60 * 24 * 40))  # some late: weeks ago, past windows
        events.append(
            {
                "event_id": f"{prefix}-{number}",
                "timestamp": (now - age).isoformat(),
                "team": team,
                "agent": agent,
                "provider": provider,
                "model": model,
                "task_id": rng.choice([None, f"run-{rng.randrange(30)}"]),
                "usage": {token_type: rng.choice([0, rng.randint(1, 40_000)]) for token_type in TOKEN_TYPES},
            }
        )
    return events


def brute_force(allowance: Allowance, zone: ZoneInfo) -> dict:
    """window start → (tokens, usd, unpriced calls, calls), summed over the calls themselves."""
    calls = Call.objects.filter(team_id=allowance.team_id)
    if allowance.agent_id:
        calls = calls.filter(agent_id=allowance.agent_id)
    totals: dict = defaultdict(lambda: [0, Decimal(0), 0, 0])
    for call in calls:
        start = window_bounds(window=allowance.window, at=call.timestamp, zone=zone)[0]
        total = totals[start]
        total[0] += sum(getattr(call, token_type) for token_type in TOKEN_TYPES)
        total[1] += call.cost_usd or 0
        total[2] += call.cost_usd is None
        total[3] += 1
    return {start: tuple(total) for start, total in totals.items()}


def counters(allowance: Allowance) -> dict:
    return {
        usage.window_start: (usage.used_tokens, usage.used_usd, usage.unpriced_calls, usage.calls)
        for usage in AllowanceUsage.objects.filter(allowance=allowance)
        if usage.calls  # the guard check creates empty rows for current windows
    }


@pytest.mark.django_db
@pytest.mark.parametrize("zone_name", ["UTC", "Europe/Berlin"])
def test_counters_equal_a_brute_force_sum_over_the_calls(zone_name):
    rng = random.Random(20261203)
    support, search = TeamFactory(slug="support"), TeamFactory(slug="search")
    triage = AgentFactory(team=support, name="triage")
    with override_settings(FINOPS_TIME_ZONE=zone_name):
        allowances = [
            allowance_create(principal=None, team=support, agent=None, window="day", limit_usd=Decimal(100)),
            allowance_create(principal=None, team=support, agent=triage, window="hour", limit_tokens=10**9),
            allowance_create(principal=None, team=support, agent=triage, window="week", limit_usd=Decimal(5)),
            allowance_create(principal=None, team=search, agent=None, window="month", limit_tokens=10**9),
        ]
        now = timezone.now()
        batches = [random_events(rng, now=now, count=rng.randint(1, 120), prefix=f"b{n}") for n in range(12)]
        for batch in batches:
            events_ingest(raw_events=batch, principal=None, source="test")
            if rng.random() < 0.4:  # a retried batch, partly overlapping the next: counted once
                events_ingest(raw_events=batch[: len(batch) // 2] + batch, principal=None, source="test")
    zone = ZoneInfo(zone_name)
    assert Call.objects.count() == sum(len(batch) for batch in batches)
    assert Call.objects.filter(cost_usd__isnull=True).exists()  # unpriced calls are in the comparison
    for allowance in allowances:
        expected = brute_force(allowance, zone)
        assert len(expected) > 1  # several windows, late events among them
        assert counters(allowance) == expected, allowance


@pytest.mark.django_db
def test_an_allowance_created_mid_window_counts_the_calls_already_made_in_it_once():
    rng = random.Random(7)
    support = TeamFactory(slug="support")
    TeamFactory(slug="search")
    now = timezone.now()
    before = random_events(rng, now=now, count=150, prefix="before")
    events_ingest(raw_events=before, principal=None, source="test")
    allowance = allowance_create(
        principal=None, team=support, agent=None, window="month", limit_usd=Decimal(9)
    )
    after = random_events(rng, now=now, count=150, prefix="after")
    events_ingest(raw_events=after + before, principal=None, source="test")  # the old ones again: no change
    current = window_bounds(window="month", at=timezone.now())[0]
    expected = brute_force(allowance, ZoneInfo("UTC"))
    # the current window holds every call in it (seeded, then written); earlier windows only what came after
    assert counters(allowance)[current] == expected[current]


@pytest.mark.django_db
def test_an_event_settles_the_reservation_it_carries_once_and_only_for_its_team():
    support = TeamFactory(slug="support")
    TeamFactory(slug="search")
    allowance = allowance_create(principal=None, team=support, agent=None, window="day", limit_usd=Decimal(1))
    now = timezone.now()
    held = Reservation.objects.create(
        allowance=allowance,
        team=support,
        estimated_usd=Decimal("0.1"),
        created_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    event = {
        "event_id": "e-1",
        "timestamp": now.astimezone(UTC).isoformat(),
        "team": "search",  # another team's event naming it: no effect
        "agent": "ranker",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"uncached_input": 1000},
        "reservation_id": str(held.reservation_id),
    }
    assert events_ingest(raw_events=[event], principal=None, source="test").accepted == 1
    held.refresh_from_db()
    assert held.settled_at is None
    result = events_ingest(
        raw_events=[{**event, "event_id": "e-2", "team": "support"}], principal=None, source="test"
    )
    assert result.accepted == 1
    held.refresh_from_db()
    assert held.settled_at is not None


@pytest.mark.django_db
def test_a_reservation_id_that_is_not_a_uuid_rejects_that_event_only():
    TeamFactory(slug="support")
    good = {
        "event_id": "ok",
        "timestamp": timezone.now().isoformat(),
        "team": "support",
        "agent": "a",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"output": 3},
    }
    result = events_ingest(
        raw_events=[good, {**good, "event_id": "bad", "reservation_id": "res-42"}],
        principal=None,
        source="test",
    )
    assert result.accepted == 1
    assert result.rejected[0]["index"] == 1
    assert "reservation_id" in result.rejected[0]["errors"]
