"""The alert rollups the writer keeps equal a brute-force sum over the calls: the minute rollup over the
recent calls only (retried batches and repeated events counted once, a late import of old events
leaving it alone, repricing moving it), the prompt-version rollup over every call; the purge drops
exactly the minutes past the retention."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from finops.ledger.models import Call, PromptVersionRollup, RecentRollup
from finops.ledger.rollups import recent_cutoff, recent_rollups_purge
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.models import ModelPriceOverride
from finops.pricing.tasks import reprice_unpriced_calls
from ingest.writer import events_ingest

MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-4o"),
    ("acme", "acme-large-2"),
]  # acme: unpriced
SCOPES = [("support", "triage"), ("support", "refunds"), ("search", "ranker")]


def expected_cutoff(now: datetime, zone_name: str) -> datetime:
    """Written out again here, not imported: 8 days back, or the UTC midnight before the month's
    start in the zone when that start is not a UTC midnight."""
    local = now.astimezone(ZoneInfo(zone_name))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    midnight = month_start.replace(hour=0, minute=0)
    if month_start != midnight:
        return min(now - timedelta(days=8), midnight)
    return now - timedelta(days=8)


def random_events(
    rng: random.Random, *, now: datetime, count: int, prefix: str, cutoff: datetime
) -> list[dict]:
    events = []
    while len(events) < count:
        age = timedelta(seconds=rng.randrange(0, 60 * 60 * 24 * 45))  # some weeks ago, past the retention
        timestamp = now - age
        if abs(timestamp - cutoff) < timedelta(minutes=10):
            continue  # the writer takes its cutoff a moment later than this test: stay clear of it
        provider, model = rng.choice(MODELS)
        team, agent = rng.choice(SCOPES)
        events.append(
            {
                "event_id": f"{prefix}-{len(events)}",
                "timestamp": timestamp.isoformat(),
                "team": team,
                "agent": agent,
                "provider": provider,
                "model": model,
                "task_id": rng.choice([None, f"run-{rng.randrange(30)}"]),
                "prompt_version": rng.choice([None, f"{agent}@v1", f"{agent}@v2"]),
                "usage": {token_type: rng.choice([0, rng.randint(1, 40_000)]) for token_type in TOKEN_TYPES},
            }
        )
    return events


def minute_brute_force(*, since: datetime) -> dict:
    totals: dict = defaultdict(lambda: [0, 0, 0, Decimal(0), *([0] * len(TOKEN_TYPES))])
    for call in Call.objects.filter(timestamp__gte=since):
        total = totals[(call.timestamp.replace(second=0, microsecond=0), call.team_id, call.agent_id)]
        total[0] += 1
        total[1] += call.cost_usd is None
        total[2] += call.task_id is None
        total[3] += call.cost_usd or 0
        for position, token_type in enumerate(TOKEN_TYPES):
            total[4 + position] += getattr(call, token_type)
    return {key: tuple(total) for key, total in totals.items()}


def minute_rollup() -> dict:
    return {
        (row.minute, row.team_id, row.agent_id): (
            row.calls,
            row.unpriced_calls,
            row.calls_not_in_task,
            row.cost_usd,
            *(getattr(row, token_type) for token_type in TOKEN_TYPES),
        )
        for row in RecentRollup.objects.all()
    }


def version_brute_force() -> dict:
    totals: dict = {}
    for call in Call.objects.filter(prompt_version__isnull=False):
        key = (call.team_id, call.agent_id, call.prompt_version)
        first, last, calls, cache_read, input_tokens = totals.get(
            key, (call.timestamp, call.timestamp, 0, 0, 0)
        )
        totals[key] = (
            min(first, call.timestamp),
            max(last, call.timestamp),
            calls + 1,
            cache_read + call.cache_read,
            input_tokens + sum(getattr(call, token_type) for token_type in INPUT_TOKEN_TYPES),
        )
    return totals


def version_rollup() -> dict:
    return {
        (row.team_id, row.agent_id, row.prompt_version): (
            row.first_call_at,
            row.last_call_at,
            row.calls,
            row.cache_read,
            row.input_tokens,
        )
        for row in PromptVersionRollup.objects.all()
    }


@pytest.mark.django_db
@pytest.mark.parametrize("zone_name", ["UTC", "Europe/Berlin", "America/New_York"])
def test_the_rollups_equal_a_brute_force_sum_over_the_calls(zone_name):
    rng = random.Random(20261203)
    now = timezone.now()
    cutoff = expected_cutoff(now, zone_name)
    with override_settings(FINOPS_TIME_ZONE=zone_name):
        assert abs(recent_cutoff(now=now) - cutoff) < timedelta(seconds=1)
        batches = [
            random_events(rng, now=now, count=rng.randint(1, 150), prefix=f"b{n}", cutoff=cutoff)
            for n in range(10)
        ]
        for batch in batches:
            events_ingest(raw_events=batch, principal=None, source="test")
            if rng.random() < 0.5:  # a retried batch with events repeated in it: counted once
                events_ingest(raw_events=batch[: len(batch) // 2] + batch, principal=None, source="test")

    assert Call.objects.count() == sum(len(batch) for batch in batches)
    assert Call.objects.filter(timestamp__lt=cutoff).count() > 50  # old calls are in the test, left out
    assert Call.objects.filter(cost_usd__isnull=True, timestamp__gte=cutoff).exists()
    expected = minute_brute_force(since=cutoff)
    assert len(expected) > 100
    assert minute_rollup() == expected
    assert version_rollup() == version_brute_force()


@pytest.mark.django_db
def test_a_late_import_of_old_events_leaves_the_minute_rollup_alone():
    rng = random.Random(5)
    now = timezone.now()
    cutoff = now - timedelta(days=8)
    recent = random_events(rng, now=now, count=200, prefix="recent", cutoff=cutoff)
    recent = [event for event in recent if datetime.fromisoformat(event["timestamp"]) > cutoff]
    events_ingest(raw_events=recent, principal=None, source="test")
    before = minute_rollup()
    assert before == minute_brute_force(since=cutoff)

    old = [
        {**event, "event_id": f"old-{n}", "timestamp": (now - timedelta(days=9 + n % 20)).isoformat()}
        for n, event in enumerate(recent)
    ]
    result = events_ingest(raw_events=old, principal=None, source="test")

    assert result.accepted == len(old)
    assert minute_rollup() == before
    assert version_rollup() == version_brute_force()  # the version rollup takes calls of any age


@pytest.mark.django_db
def test_repricing_moves_the_minute_rollup_with_the_calls():
    now = timezone.now()
    events = [
        {
            "event_id": f"unpriced-{n}",
            "timestamp": (now - timedelta(minutes=7 * n)).isoformat(),
            "team": "support",
            "agent": "triage",
            "provider": "acme",
            "model": "acme-large-2",
            "usage": {"uncached_input": 10_000 + n, "output": 500},
        }
        for n in range(40)
    ]
    events_ingest(raw_events=events, principal=None, source="test")
    assert sum(row.unpriced_calls for row in RecentRollup.objects.all()) == 40
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
    )

    reprice_unpriced_calls()

    assert not Call.objects.filter(cost_usd__isnull=True).exists()
    assert minute_rollup() == minute_brute_force(since=now - timedelta(days=8))
    assert sum(row.cost_usd for row in RecentRollup.objects.all()) == sum(
        (10_000 + n) * Decimal(3) / 10**6 + 500 * Decimal(15) / 10**6 for n in range(40)
    )


@pytest.mark.django_db
def test_the_purge_drops_the_minutes_past_the_retention_only():
    now = timezone.now()
    events = [
        {
            "event_id": f"e-{hours}",
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "team": "support",
            "agent": "triage",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"uncached_input": 1000},
        }
        for hours in range(0, 8 * 24, 5)
    ]
    events_ingest(raw_events=events, principal=None, source="test")
    assert RecentRollup.objects.count() == len(events)

    later = now + timedelta(days=2)  # two days on, the minutes older than 6 days ago today go
    deleted = recent_rollups_purge(now=later)

    kept = sorted(RecentRollup.objects.values_list("minute", flat=True))
    assert deleted == sum(1 for hours in range(0, 8 * 24, 5) if hours > 6 * 24)
    assert kept and kept[0] >= later - timedelta(days=8)
    assert len(kept) == len(events) - deleted
