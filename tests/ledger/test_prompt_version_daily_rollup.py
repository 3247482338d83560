"""The per-day prompt-version rollup equals a brute-force grouping of the stored calls (per UTC day,
agent and version: calls, cache read, input, priced cost, unpriced calls, calls in tasks and their
cost), after events arrive out of order in several batches, a re-sent batch, a file import and its
re-run, and the repricing of an unpriced model by an override; and its cost equals the published
prices of the events sent (tests/ledger/reference.py), computed without the stored calls. The
migration's backfill from the calls gives the same rows."""

from __future__ import annotations

import importlib
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from finops.ledger.models import Call, PromptVersionDailyRollup
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.models import ModelPriceOverride
from finops.pricing.tasks import reprice_unpriced_calls
from ingest.imports import file_import
from ingest.writer import events_ingest
from tests.ledger.reference import reference_cost

SCOPES = [("support", "triage"), ("support", "refunds"), ("search", "ranker")]
MODELS = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o"), ("acme", "acme-large-2")]
VERSIONS = ["v1", "v2", "v3", None]
START = datetime(2026, 11, 1, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def random_events(rng: random.Random, *, count: int, prefix: str) -> list[dict]:
    events = []
    for number in range(count):
        team, agent = rng.choice(SCOPES)
        provider, model = rng.choice(MODELS)
        moment = START + timedelta(minutes=rng.randrange(60 * 24 * 5))
        if number % 3 == 0:  # another offset: the UTC day decides, not the local one
            moment = moment.astimezone(NEW_YORK)
        event = {
            "event_id": f"{prefix}-{number}",
            "timestamp": moment.isoformat(),
            "team": team,
            "agent": agent,
            "provider": provider,
            "model": model,
            "usage": {token_type: rng.randint(0, 20_000) for token_type in TOKEN_TYPES[:5]},
        }
        version = rng.choice(VERSIONS)
        if version is not None:
            event["prompt_version"] = version
        if rng.random() < 0.6:
            event["task_id"] = f"run-{rng.randrange(12)}"
        events.append(event)
    return events


def stored() -> dict:
    """The rollup: (day, team, agent name, version) → its figures."""
    return {
        (row.day, row.team.slug, row.agent.name, row.prompt_version): (
            row.first_call_at,
            row.last_call_at,
            row.calls,
            row.cache_read,
            row.input_tokens,
            row.cost_usd,
            row.unpriced_calls,
            row.calls_in_tasks,
            row.cost_in_tasks_usd,
            row.unpriced_calls_in_tasks,
        )
        for row in PromptVersionDailyRollup.objects.select_related("team", "agent")
    }


def brute_force() -> dict:
    """The same figures grouped in Python from every stored call that names a version."""
    groups = defaultdict(list)
    for call in Call.objects.filter(prompt_version__isnull=False).select_related("team", "agent"):
        day = call.timestamp.astimezone(UTC).date()
        groups[(day, call.team.slug, call.agent.name, call.prompt_version)].append(call)
    return {
        key: (
            min(call.timestamp for call in calls),
            max(call.timestamp for call in calls),
            len(calls),
            sum(call.cache_read for call in calls),
            sum(getattr(call, token_type) for call in calls for token_type in INPUT_TOKEN_TYPES),
            sum((call.cost_usd for call in calls if call.cost_usd is not None), Decimal(0)),
            sum(call.cost_usd is None for call in calls),
            sum(call.task_id is not None for call in calls),
            sum((call.cost_usd for call in calls if call.cost_usd is not None and call.task_id), Decimal(0)),
            sum(call.cost_usd is None and call.task_id is not None for call in calls),
        )
        for key, calls in groups.items()
    }


def event_costs(events: list[dict], *, cost=reference_cost) -> dict:
    """(day, team, agent, version) → [priced cost, unpriced calls, cost in tasks, unpriced calls in
    tasks] from the events sent, each (team, event_id) once: the published prices, not the stored calls."""
    seen, totals = set(), defaultdict(lambda: [Decimal(0), 0, Decimal(0), 0])
    for event in events:
        if (event["team"], event["event_id"]) in seen or "prompt_version" not in event:
            continue
        seen.add((event["team"], event["event_id"]))
        day = datetime.fromisoformat(event["timestamp"]).astimezone(UTC).date()
        total = totals[(day, event["team"], event["agent"], event["prompt_version"])]
        price = cost(event)
        if price is None:
            total[1] += 1
            total[3] += bool(event.get("task_id"))
            continue
        total[0] += price
        if event.get("task_id"):
            total[2] += price
    return dict(totals)


def costs_of(rows: dict) -> dict:
    return {key: [value[5], value[6], value[8], value[9]] for key, value in rows.items()}


@pytest.mark.django_db
def test_out_of_order_batches_and_a_resent_batch_equal_the_brute_force_grouping():
    rng = random.Random(21)
    events = random_events(rng, count=400, prefix="a")
    # newest first, in four batches: each batch's days were already written by a later one
    events.sort(key=lambda event: datetime.fromisoformat(event["timestamp"]), reverse=True)
    for batch in range(4):
        part = events[batch * 100 : (batch + 1) * 100]
        rng.shuffle(part)
        assert events_ingest(raw_events=part, principal=None, source="test").accepted == 100
    expected = brute_force()
    assert len(expected) > 40 and sum(bool(value[6]) for value in expected.values()) > 20  # unpriced
    assert all(value[8] for value in expected.values() if value[7] > value[6])  # priced calls in tasks
    assert stored() == expected
    assert costs_of(expected) == event_costs(events)

    # the first batch again, then old and new events mixed with one repeated in its own batch
    assert events_ingest(raw_events=events[:100], principal=None, source="test").duplicates == 100
    more = random_events(rng, count=80, prefix="b")
    mixed = events[150:190] + more + [dict(more[0], usage={"cache_read": 999_999})]
    result = events_ingest(raw_events=mixed, principal=None, source="test")
    assert (result.accepted, result.duplicates) == (80, 41)
    assert stored() == brute_force()
    assert costs_of(stored()) == event_costs(events + mixed)
    assert sum(row.calls for row in PromptVersionDailyRollup.objects.all()) == sum(
        "prompt_version" in event for event in events + more
    )


@pytest.mark.django_db(transaction=True)
def test_a_file_import_and_its_rerun_equal_the_brute_force_grouping(tmp_path):
    rng = random.Random(23)
    events = random_events(rng, count=260, prefix="f")
    events += events[:6]  # repeated in the file: counted once
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    summary = file_import(path=path, file_format="events-jsonl", batch_size=40)  # pipelined writers
    assert (summary.accepted, summary.duplicates) == (260, 6)
    expected = brute_force()
    assert stored() == expected
    assert costs_of(expected) == event_costs(events)
    file_import(path=path, file_format="events-jsonl", batch_size=40)
    assert stored() == expected


@pytest.mark.django_db
def test_repricing_an_unpriced_model_moves_its_cost_into_the_rollup():
    rng = random.Random(25)
    events = random_events(rng, count=300, prefix="r")
    events_ingest(raw_events=events, principal=None, source="test")
    unpriced = sum(row.unpriced_calls for row in PromptVersionDailyRollup.objects.all())
    assert unpriced == sum(e["model"] == "acme-large-2" and "prompt_version" in e for e in events) > 0
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("3"),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_5m_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        output_per_mtok=Decimal("15"),
    )

    reprice_unpriced_calls()  # the worker's task, run here in-process

    assert not Call.objects.filter(cost_usd__isnull=True).exists()
    assert stored() == brute_force()
    assert sum(row.unpriced_calls for row in PromptVersionDailyRollup.objects.all()) == 0
    # the override's rates by hand
    override = {
        "uncached_input": "3",
        "cache_read": "0.3",
        "cache_write_5m": "3.75",
        "cache_write_1h": "6",
        "output": "15",
    }

    def priced(event: dict) -> Decimal | None:
        if event["model"] != "acme-large-2":
            return reference_cost(event)
        return sum(
            (Decimal(count) * Decimal(override[token]) / 10**6 for token, count in event["usage"].items()),
            Decimal(0),
        )

    assert costs_of(stored()) == event_costs(events, cost=priced)


@pytest.mark.django_db
def test_the_migration_backfill_rebuilds_the_rollup_from_the_calls():
    rng = random.Random(27)
    events_ingest(raw_events=random_events(rng, count=250, prefix="m"), principal=None, source="test")
    written = stored()
    migration = importlib.import_module("finops.ledger.migrations.0009_prompt_version_daily_rollup")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ledger_promptversiondailyrollup")
        cursor.execute(migration.BACKFILL)
    assert stored() == written == brute_force()
