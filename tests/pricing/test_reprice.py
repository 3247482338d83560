"""Repricing: unpriced calls get priced once a price exists, and their cost moves into the rollups and task
aggregates exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from finops.accounts.models import Team
from finops.ledger.models import Agent, Call, DailyRollup, Task
from finops.ledger.services import calls_reprice, task_outcomes_record
from finops.pricing.models import ModelPriceOverride
from finops.pricing.services import PriceBook
from finops.pricing.tasks import reprice_unpriced_calls
from ingest.writer import events_ingest

DAY = datetime(2026, 11, 2, 9, tzinfo=UTC)


def acme_event(number: int, *, at: datetime, task_id: str | None, usage: dict) -> dict:
    return {
        "event_id": f"acme-{number}",
        "timestamp": at.isoformat(),
        "team": "support",
        "agent": "triage",
        "task_id": task_id,
        "provider": "acme",
        "model": "acme-large-2",
        "usage": usage,
    }


def ledger_snapshot() -> dict:
    return {
        "calls": sorted(Call.objects.values_list("event_id", "cost_usd")),
        "rollups": sorted(
            DailyRollup.objects.values_list("day", "model", "cost_usd", "unpriced_calls", "cost_output_usd")
        ),
        "tasks": sorted(Task.objects.values_list("task_id", "cost_usd", "unpriced_calls")),
    }


def test_reprice_prices_unpriced_calls_once_and_moves_cost_into_rollups_and_tasks(db):
    # given: three calls of a model nobody has priced, two of them in a task, one not in any task
    events = [
        acme_event(1, at=DAY, task_id="run-1", usage={"uncached_input": 1000, "output": 200}),
        acme_event(
            2,
            at=DAY + timedelta(minutes=5),
            task_id="run-1",
            usage={"uncached_input": 3000, "cache_read": 500, "reasoning": 100},
        ),
        acme_event(3, at=DAY + timedelta(days=1), task_id=None, usage={"output": 40}),
    ]
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert result.accepted == 3
    team = Team.objects.get(slug="support")
    task_outcomes_record(
        outcomes=[
            {
                "team": team,
                "agent": Agent.objects.get(team=team, name="triage"),
                "task_id": "run-1",
                "status": "success",
                "started_at": DAY,
                "ended_at": DAY + timedelta(minutes=10),
            }
        ]
    )
    assert Call.objects.filter(cost_usd__isnull=True).count() == 3
    assert Task.objects.get(task_id="run-1").unpriced_calls == 2
    assert sum(DailyRollup.objects.values_list("unpriced_calls", flat=True)) == 3

    # when: finops adds a price (cache read and reasoning fall back to input and output) and reprices
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("2"),
        output_per_mtok=Decimal("10"),
    )
    priced = calls_reprice(price_book=PriceBook.load(), provider="acme", model="acme-large-2")

    # then: each call costs Σ tokens × rate / 10⁶, and the aggregates moved by exactly that
    expected = {
        "acme-1": Decimal(1000 * 2 + 200 * 10) / 1_000_000,
        "acme-2": Decimal(3000 * 2 + 500 * 2 + 100 * 10) / 1_000_000,
        "acme-3": Decimal(40 * 10) / 1_000_000,
    }
    assert priced == 3
    assert dict(Call.objects.values_list("event_id", "cost_usd")) == expected
    task = Task.objects.get(task_id="run-1")
    assert task.cost_usd == expected["acme-1"] + expected["acme-2"]
    assert task.unpriced_calls == 0
    rollups = {row.day: row for row in DailyRollup.objects.all()}
    first, second = rollups[DAY.date()], rollups[(DAY + timedelta(days=1)).date()]
    assert first.cost_usd == expected["acme-1"] + expected["acme-2"]
    assert first.unpriced_calls == 0
    assert first.cost_output_usd == Decimal(200 * 10) / 1_000_000
    assert first.cost_reasoning_usd == Decimal(100 * 10) / 1_000_000
    assert first.cost_cache_read_usd == Decimal(500 * 2) / 1_000_000
    assert first.cost_not_in_task_usd == 0
    assert second.cost_usd == second.cost_not_in_task_usd == expected["acme-3"]
    assert second.unpriced_calls == 0

    # and running it again (or the periodic sweep) changes nothing
    before = ledger_snapshot()
    assert calls_reprice(price_book=PriceBook.load(), provider="acme", model="acme-large-2") == 0
    assert reprice_unpriced_calls() == 0
    assert ledger_snapshot() == before


def test_calls_before_the_override_starts_stay_unpriced(db):
    events_ingest(
        raw_events=[
            acme_event(1, at=DAY - timedelta(days=10), task_id=None, usage={"output": 1000}),
            acme_event(2, at=DAY, task_id=None, usage={"output": 1000}),
        ],
        principal=None,
        source="test",
    )
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=DAY - timedelta(days=1),
        uncached_input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("4"),
    )

    assert reprice_unpriced_calls("acme", "acme-large-2") == 1

    assert dict(Call.objects.values_list("event_id", "cost_usd")) == {
        "acme-1": None,
        "acme-2": Decimal("0.004"),
    }
    assert DailyRollup.objects.get(day=(DAY - timedelta(days=10)).date()).unpriced_calls == 1
    assert DailyRollup.objects.get(day=DAY.date()).unpriced_calls == 0
