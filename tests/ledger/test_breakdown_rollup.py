"""The breakdown rollup the writer keeps equals a brute-force sum over the events sent: each entry of
an event's `input_breakdown` under its category (unknown keys as "other", values that are not token
counts left out), and the input tokens of events without a usable breakdown as "not_broken_down";
a re-sent batch, an event repeated within a batch and a re-run file import count nothing twice; the
migration's backfill from stored calls gives the same rows."""

from __future__ import annotations

import importlib
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from finops.ledger.models import BreakdownRollup
from ingest.imports import file_import
from ingest.writer import events_ingest

KNOWN = ("system", "tools", "history", "retrieval", "tool_results", "user")
SCOPES = [("support", "triage"), ("support", "refunds"), ("search", "ranker")]
INPUT = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
START = datetime(2026, 11, 1, tzinfo=UTC)


def random_breakdown(rng: random.Random):
    shape = rng.randrange(8)
    if shape == 0:
        return None
    if shape == 1:
        return {}
    if shape == 2:  # nothing usable: text, an object, a negative and an absurd count
        return {"system": "lots", "tools": {"n": 3}, "history": -5, "user": 10**12}
    breakdown = {key: rng.randint(0, 30_000) for key in rng.sample(KNOWN, rng.randint(1, len(KNOWN)))}
    if shape == 3:
        breakdown.update({"scratchpad": 700, "memory": 1.6, "notes": "x"})  # two unknown numbers: other
    if shape == 4:
        breakdown["retrieval"] = 12.5  # rounded half away from zero, as PostgreSQL's round(numeric)
    return breakdown


def random_events(rng: random.Random, *, count: int, prefix: str) -> list[dict]:
    events = []
    for number in range(count):
        team, agent = rng.choice(SCOPES)
        event = {
            "event_id": f"{prefix}-{number}",
            "timestamp": (START + timedelta(minutes=rng.randrange(60 * 24 * 6))).isoformat(),
            "team": team,
            "agent": agent,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "usage": {token_type: rng.randint(0, 20_000) for token_type in (*INPUT, "output")},
        }
        breakdown = random_breakdown(rng)
        if breakdown is not None:
            event["input_breakdown"] = breakdown
        events.append(event)
    return events


def round_half_up(value) -> int:
    return int(value + 0.5)  # values here are non-negative


def brute_force(events: list[dict]) -> dict:
    """(day, team, agent name, category) → [tokens, calls], over each (team, event_id) once (its first)."""
    seen, totals = set(), defaultdict(lambda: [0, 0])
    for event in events:
        if (event["team"], event["event_id"]) in seen:
            continue
        seen.add((event["team"], event["event_id"]))
        day = datetime.fromisoformat(event["timestamp"]).astimezone(UTC).date()
        parts: dict[str, int] = defaultdict(int)
        for key, value in (event.get("input_breakdown") or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10**9:
                continue
            parts[key if key in KNOWN else "other"] += round_half_up(value)
        if not parts:
            parts["not_broken_down"] = sum(event["usage"].get(token_type, 0) for token_type in INPUT)
        for category, tokens in parts.items():
            total = totals[(day, event["team"], event["agent"], category)]
            total[0] += tokens
            total[1] += 1
    return dict(totals)


def stored() -> dict:
    """The rollup in brute_force's shape: (day, team, agent name, part) → [tokens, calls], parts with calls."""
    return {
        (row.day, row.team.slug, row.agent.name, part): [getattr(row, f"{part}_tokens"), calls]
        for row in BreakdownRollup.objects.select_related("team", "agent")
        for part in (*KNOWN, "other", "not_broken_down")
        if (calls := getattr(row, f"{part}_calls"))
    }


@pytest.mark.django_db
def test_rollup_equals_brute_force_and_a_resent_batch_adds_nothing():
    rng = random.Random(9)
    first = random_events(rng, count=300, prefix="a")
    assert events_ingest(raw_events=first, principal=None, source="test").accepted == 300
    expected = brute_force(first)
    assert {category for *_, category in expected} >= {*KNOWN, "other", "not_broken_down"}
    assert stored() == expected

    # the same batch again, then a batch mixing old and new events and repeating one of its own
    assert events_ingest(raw_events=first, principal=None, source="test").duplicates == 300
    second = random_events(rng, count=120, prefix="b")
    mixed = first[:50] + second + [dict(second[0], input_breakdown={"system": 999_999})]
    result = events_ingest(raw_events=mixed, principal=None, source="test")
    assert (result.accepted, result.duplicates) == (120, 51)
    assert stored() == brute_force(first + mixed)


@pytest.mark.django_db
def test_rollup_sums_one_call_by_hand():
    events_ingest(
        raw_events=[
            {
                "event_id": "one",
                "timestamp": "2026-11-03T23:59:00-02:00",  # 4 Nov in UTC
                "team": "support",
                "agent": "triage",
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "usage": {"uncached_input": 10, "cache_read": 90},
                "input_breakdown": {"system": 40, "history": 50, "memo": 3, "scratch": 4, "user": "?"},
            },
            {
                "event_id": "two",
                "timestamp": "2026-11-04T08:00:00Z",
                "team": "support",
                "agent": "triage",
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "usage": {"uncached_input": 7, "cache_write_5m": 5, "output": 100},
            },
        ],
        principal=None,
        source="test",
    )
    day = datetime(2026, 11, 4).date()
    assert stored() == {
        (day, "support", "triage", "system"): [40, 1],
        (day, "support", "triage", "history"): [50, 1],
        (day, "support", "triage", "other"): [7, 1],
        (day, "support", "triage", "not_broken_down"): [12, 1],
    }


@pytest.mark.django_db(transaction=True)
def test_file_import_and_its_rerun_match_brute_force(tmp_path):
    rng = random.Random(11)
    events = random_events(rng, count=250, prefix="f")
    events += events[:5]  # repeated in the file: counted once
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    summary = file_import(path=path, file_format="events-jsonl", batch_size=40)  # pipelined writers
    assert (summary.accepted, summary.duplicates) == (250, 5)
    expected = brute_force(events)
    assert stored() == expected
    file_import(path=path, file_format="events-jsonl", batch_size=40)
    assert stored() == expected


@pytest.mark.django_db
def test_migration_backfill_rebuilds_the_rollup_from_the_calls():
    rng = random.Random(13)
    events = random_events(rng, count=200, prefix="m")
    events_ingest(raw_events=events, principal=None, source="test")
    written = stored()
    migration = importlib.import_module("finops.ledger.migrations.0007_breakdown_rollup")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ledger_breakdownrollup")
        cursor.execute(migration.BACKFILL)
    assert stored() == written == brute_force(events)
