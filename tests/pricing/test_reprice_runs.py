"""Re-pricing runs (issue 10, point 5): a price or discount changed later re-prices the open months'
calls and rollups exactly, leaves a closed month's alone and adjusts it instead, and changes nothing
when run again."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from finops.bills.models import Adjustment, BillMonth, MonthState
from finops.ledger.models import Call, DailyRollup, PromptVersionDailyRollup, RecentRollup, Task
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing import reprice
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceDelta, RepriceRun
from finops.pricing.prices import (
    discount_create,
    price_override_create,
    price_override_delete,
    price_override_update,
)
from finops.pricing.reprice import RepriceScope, reprice_run_create, reprice_run_execute
from finops.pricing.services import PriceBook
from ingest.writer import events_ingest

PICO = Decimal("1e-12")
RATES = {  # acme-large-2's price, $/MTok
    "uncached_input": Decimal("3"),
    "cache_read": Decimal("0.3"),
    "cache_write_5m": Decimal("3.75"),
    "cache_write_1h": Decimal("6"),
    "output": Decimal("15"),
    "reasoning": Decimal("15"),
}
OCTOBER, NOVEMBER = date(2026, 10, 1), date(2026, 11, 1)


def event(number: int, *, at: datetime, usage: dict, batch=False, task_id=None, version=None) -> dict:
    return {
        "event_id": f"ev-{number}",
        "timestamp": at.isoformat(),
        "team": "support" if number % 3 else "research",
        "agent": f"agent-{number % 2}",
        "task_id": task_id,
        "provider": "acme",
        "model": "acme-large-2",
        "usage": usage,
        "batch": batch,
        "prompt_version": version,
    }


def expected_cost(usage: dict, *, batch: bool, percent_off: Decimal, rates=RATES) -> dict[str, Decimal]:
    """Per token type: tokens × rate / 10⁶, halved for batch, less the discount, to 1e-12 half-even."""
    multiplier = (Decimal("0.5") if batch else Decimal(1)) * (1 - percent_off / 100)
    return {
        token_type: (usage.get(token_type, 0) * rates[token_type] / 1_000_000 * multiplier).quantize(
            PICO, ROUND_HALF_EVEN
        )
        for token_type in TOKEN_TYPES
    }


def acme_price(**changes) -> ModelPriceOverride:
    fields = {
        "provider": "acme",
        "model": "acme-large-2",
        "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
        "uncached_input_per_mtok": RATES["uncached_input"],
        "cache_read_per_mtok": RATES["cache_read"],
        "cache_write_5m_per_mtok": RATES["cache_write_5m"],
        "cache_write_1h_per_mtok": RATES["cache_write_1h"],
        "output_per_mtok": RATES["output"],
    }
    return ModelPriceOverride.objects.create(**{**fields, **changes})


def random_usage(rng: random.Random) -> dict:
    return {
        "uncached_input": rng.randint(0, 40_000),
        "cache_read": rng.choice([0, rng.randint(1, 200_000)]),
        "cache_write_5m": rng.choice([0, 0, rng.randint(1, 9_999)]),
        "cache_write_1h": rng.choice([0, 0, rng.randint(1, 9_999)]),
        "output": rng.randint(1, 4_000),
        "reasoning": rng.choice([0, rng.randint(1, 3_333)]),
    }


def load(events: list[dict]) -> None:
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert result.accepted == len(events), result


def ledger_state(month: date) -> dict:
    """Everything the month's re-pricing may change, as stored."""
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    start, end = (datetime.combine(day, datetime.min.time(), tzinfo=UTC) for day in (month, following))
    type_costs = [f"cost_{token_type}_usd" for token_type in TOKEN_TYPES]
    return {
        "calls": sorted(
            Call.objects.filter(timestamp__gte=start, timestamp__lt=end).values_list("event_id", "cost_usd")
        ),
        "rollups": sorted(
            DailyRollup.objects.filter(day__gte=month, day__lt=following).values_list(
                "day",
                "team_id",
                "agent_id",
                "cost_usd",
                "unpriced_calls",
                "cost_not_in_task_usd",
                *type_costs,
            )
        ),
        "versions": sorted(
            PromptVersionDailyRollup.objects.filter(day__gte=month, day__lt=following).values_list(
                "day", "agent_id", "prompt_version", "cost_usd", "cost_in_tasks_usd", "unpriced_calls"
            )
        ),
    }


def test_a_discount_added_later_reprices_open_months_and_adjusts_the_closed_one(db):
    # given: calls in October (closed before the discount) and November (open), priced at acme's list
    # price; some batch, some in tasks and prompt versions
    rng = random.Random(10)
    acme_price()
    events, usages = [], {}
    for number in range(1, 121):
        month_day = datetime(2026, 10, 18, tzinfo=UTC) + timedelta(hours=7 * number + rng.randint(0, 6))
        usage = random_usage(rng)
        usages[f"ev-{number}"] = (usage, number % 4 == 0, month_day)
        events.append(
            event(
                number,
                at=month_day,
                usage=usage,
                batch=number % 4 == 0,
                task_id=f"run-{number // 5}" if number % 3 else None,
                version="v1" if number % 2 else None,
            )
        )
    load(events)
    BillMonth.objects.create(month=OCTOBER, state=MonthState.CLOSED)
    october_before = ledger_state(OCTOBER)
    october_total_before = sum(cost for _, cost in october_before["calls"])
    task_costs_before = dict(Task.objects.values_list("task_id", "cost_usd"))
    for event_id, cost in Call.objects.values_list("event_id", "cost_usd"):
        usage, batch, _ = usages[event_id]
        assert cost == sum(expected_cost(usage, batch=batch, percent_off=Decimal(0)).values())

    # when: finops adds 12.5% off acme from 20 October, and the run it queued is carried out
    _, run = discount_create(
        principal=None,
        provider="acme",
        percent=Decimal("12.5"),
        effective_from=datetime(2026, 10, 20, tzinfo=UTC),
    )
    assert run.status == "queued" and run.scopes == [
        {"provider": "acme", "model": None, "start": "2026-10-20T00:00:00+00:00", "end": None}
    ]
    run = reprice_run_execute(run_id=run.pk)

    # then: every November call costs its tokens at the discounted rates
    expected_types = {}
    for event_id, (usage, batch, at) in usages.items():
        off = Decimal("12.5") if at >= datetime(2026, 10, 20, tzinfo=UTC) else Decimal(0)
        expected_types[event_id] = expected_cost(usage, batch=batch, percent_off=off)
    november_calls = Call.objects.filter(timestamp__gte=datetime(2026, 11, 1, tzinfo=UTC))
    assert november_calls.count() > 40
    for event_id, cost in november_calls.values_list("event_id", "cost_usd"):
        assert cost == sum(expected_types[event_id].values()), event_id
    # and November's daily rollups hold the new sums, per token type too
    sums = defaultdict(lambda: defaultdict(Decimal))
    for call in november_calls:
        key = (call.timestamp.date(), call.team_id, call.agent_id)
        for token_type, amount in expected_types[call.event_id].items():
            sums[key][token_type] += amount
        if call.task_id is None:
            sums[key]["not_in_task"] += call.cost_usd
    for rollup in DailyRollup.objects.filter(day__gte=NOVEMBER):
        expected = sums[rollup.day, rollup.team_id, rollup.agent_id]
        for token_type in TOKEN_TYPES:
            assert getattr(rollup, f"cost_{token_type}_usd") == expected[token_type]
        assert rollup.cost_usd == sum(expected[token_type] for token_type in TOKEN_TYPES)
        assert rollup.cost_not_in_task_usd == expected["not_in_task"]
    # tasks moved by their November calls' difference only
    for task in Task.objects.all():
        delta = sum(
            sum(expected_types[call.event_id].values())
            - sum(expected_cost(usages[call.event_id][0], batch=call.batch, percent_off=Decimal(0)).values())
            for call in november_calls.filter(team_id=task.team_id, task_id=task.task_id)
        )
        assert task.cost_usd == task_costs_before[task.task_id] + delta
    # prompt-version days equal their calls
    for version_day in PromptVersionDailyRollup.objects.filter(day__gte=NOVEMBER):
        calls = november_calls.filter(
            agent_id=version_day.agent_id,
            prompt_version=version_day.prompt_version,
            timestamp__date=version_day.day,
        )
        assert version_day.cost_usd == sum(call.cost_usd for call in calls)

    # and October, closed, is untouched: calls and rollups; the difference is an adjustment in November
    assert ledger_state(OCTOBER) == october_before
    october_after = sum(
        sum(expected_types[event_id].values())
        for event_id, (_, _, at) in usages.items()
        if at < datetime(2026, 11, 1, tzinfo=UTC)
    )
    adjustments = Adjustment.objects.filter(month=OCTOBER, reason="reprice")
    assert adjustments.exists() and set(adjustments.values_list("shown_in", flat=True)) == {NOVEMBER}
    assert sum(adjustments.values_list("usd", flat=True)) == october_after - october_total_before < 0
    assert not adjustments.filter(day__lt=date(2026, 10, 20)).exists()

    # the run says what it did; its deltas add up
    assert run.status == "done" and run.months_repriced == ["2026-11"] and run.months_adjusted == ["2026-10"]
    assert (
        run.calls_repriced
        == november_calls.count()
        + Call.objects.filter(
            timestamp__gte=datetime(2026, 10, 20, tzinfo=UTC), timestamp__lt=datetime(2026, 11, 1, tzinfo=UTC)
        ).count()
    )
    open_deltas = RepriceDelta.objects.filter(run=run, adjusted=False)
    assert sum(d.after_usd - d.before_usd for d in open_deltas) == sum(
        sum(expected_types[call.event_id].values())
        - sum(expected_cost(usages[call.event_id][0], batch=call.batch, percent_off=Decimal(0)).values())
        for call in november_calls
    )
    closed_deltas = RepriceDelta.objects.filter(run=run, adjusted=True)
    assert sum(d.after_usd - d.before_usd for d in closed_deltas) == october_after - october_total_before

    # when run again (a retried task, or `finops reprice`): nothing changes, no new adjustment
    state = {month: ledger_state(month) for month in (OCTOBER, NOVEMBER)}
    tasks = sorted(Task.objects.values_list("task_id", "cost_usd", "unpriced_calls"))
    again = reprice_run_execute(
        run_id=reprice_run_create(trigger="again", scopes=[RepriceScope.from_json(run.scopes[0])]).pk
    )
    assert again.calls_repriced == 0 and again.calls_scanned == run.calls_scanned
    assert not again.deltas.exists()
    assert {month: ledger_state(month) for month in (OCTOBER, NOVEMBER)} == state
    assert sorted(Task.objects.values_list("task_id", "cost_usd", "unpriced_calls")) == tasks
    assert Adjustment.objects.count() == adjustments.count()


def day_costs() -> dict[date, Decimal]:
    costs = defaultdict(Decimal)
    for day, cost in DailyRollup.objects.values_list("day", "cost_usd"):
        costs[day] += cost
    return costs


def test_an_override_changed_mid_month_reprices_only_from_its_start(db):
    # given: calls on 14 and 15 November (before and after noon) and on the 20th, at the old price
    acme_price()
    moments = [
        datetime(2026, 11, 14, 23, 59, tzinfo=UTC),
        datetime(2026, 11, 15, 11, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 15, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 20, 8, tzinfo=UTC),
    ]
    usage = {"uncached_input": 1000, "output": 100, "cache_read": 5000}
    load([event(number, at=at, usage=usage, version="v1") for number, at in enumerate(moments, start=3)])
    old = sum(expected_cost(usage, batch=False, percent_off=Decimal(0)).values())
    rollups_before = day_costs()

    # when: a new acme price starts at noon on the 15th (input and output up, cache read at input)
    new_rates = {**RATES, "uncached_input": Decimal("4"), "output": Decimal("20"), "cache_read": Decimal("4")}
    _, run = price_override_create(
        principal=None,
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2026, 11, 15, 12, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("4"),
        output_per_mtok=Decimal("20"),
    )
    run = reprice_run_execute(run_id=run.pk)

    # then: only the calls from noon on re-priced, and the 15th's rollup holds both prices
    new = sum(expected_cost(usage, batch=False, percent_off=Decimal(0), rates=new_rates).values())
    assert new != old
    costs = dict(Call.objects.values_list("timestamp", "cost_usd"))
    assert [costs[at] for at in moments] == [old, old, new, new]
    rollups = day_costs()
    assert rollups[date(2026, 11, 14)] == rollups_before[date(2026, 11, 14)] == old
    assert rollups[date(2026, 11, 15)] == old + new
    assert rollups[date(2026, 11, 20)] == new
    assert run.calls_repriced == 2
    assert run.scopes[0]["start"] == "2026-11-15T12:00:00+00:00" and run.scopes[0]["end"] is None

    # when the override moves to the 20th: the 15th goes back to the old price
    override = ModelPriceOverride.objects.get(effective_from=datetime(2026, 11, 15, 12, tzinfo=UTC))
    _, run = price_override_update(
        principal=None, override=override, changes={"effective_from": datetime(2026, 11, 20, tzinfo=UTC)}
    )
    reprice_run_execute(run_id=run.pk)
    costs = dict(Call.objects.values_list("timestamp", "cost_usd"))
    assert [costs[at] for at in moments] == [old, old, old, new]
    assert day_costs()[date(2026, 11, 15)] == 2 * old


def test_an_unpriced_model_gets_priced_and_loses_its_price_when_the_override_goes(db):
    usage = {"uncached_input": 2000, "output": 300}
    load(
        [
            event(number, at=datetime(2026, 11, 3, number, tzinfo=UTC), usage=usage, task_id="t")
            for number in (1, 2, 4)
        ]
    )
    assert sorted(DailyRollup.objects.values_list("unpriced_calls", flat=True)) == [1, 2]

    override, run = price_override_create(
        principal=None,
        provider="ACME",
        model="Acme-Large-2",  # the price book matches names in any case
        effective_from=datetime(2026, 11, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
    )
    run = reprice_run_execute(run_id=run.pk)
    assert run.calls_newly_priced == 3 and run.calls_repriced == 3
    each = Decimal(2000 * 1 + 300 * 2) / 1_000_000
    assert list(Call.objects.values_list("cost_usd", flat=True)) == [each] * 3
    assert sorted(DailyRollup.objects.values_list("unpriced_calls", flat=True)) == [0, 0]
    assert sum(DailyRollup.objects.values_list("cost_usd", flat=True)) == 3 * each
    task = Task.objects.get()
    assert (task.cost_usd, task.unpriced_calls) == (3 * each, 0)

    run = reprice_run_execute(run_id=price_override_delete(principal=None, override=override).pk)
    assert run.calls_newly_unpriced == 3
    assert list(Call.objects.values_list("cost_usd", flat=True)) == [None] * 3
    assert sorted(DailyRollup.objects.values_list("unpriced_calls", flat=True)) == [1, 2]
    assert sum(DailyRollup.objects.values_list("cost_usd", flat=True)) == 0
    task = Task.objects.get()
    assert (task.cost_usd, task.unpriced_calls) == (0, 3)


@pytest.mark.parametrize("arithmetic", ["bigint", "numeric"])
def test_set_based_prices_equal_the_single_call_pricing_on_random_calls(db, monkeypatch, arithmetic):
    """The oracle: random calls of catalog models (tiered ones too), batch or not, under overrides and
    discounts with odd percentages and six-decimal rates starting mid-day, re-priced in SQL, equal
    PriceBook.price to the last decimal, per call and per token type in the rollups; both in bigint
    (real prices) and in the numeric path taken when a product would not fit in bigint."""
    if arithmetic == "numeric":
        monkeypatch.setattr(reprice, "INT8_MAX", 10)  # every numerator "too wide": numeric throughout
    rng = random.Random(7)
    models = [
        ("anthropic", "claude-sonnet-4-5"),
        ("openai", "gpt-4o"),
        ("google", "gemini-2.5-pro"),  # tiered by input tokens
        ("acme", "acme-large-2"),
        ("nobody", "unknown-model"),
    ]
    acme_price(uncached_input_per_mtok=Decimal("3.123457"), output_per_mtok=Decimal("15.000001"))
    acme_price(
        effective_from=datetime(2026, 11, 9, 13, 17, 5, tzinfo=UTC), output_per_mtok=Decimal("7.654321")
    )
    events = []
    for number in range(400):
        provider, model = rng.choice(models)
        at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 29 * 86400))
        usage = random_usage(rng)
        if rng.random() < 0.2:
            usage["uncached_input"] = rng.randint(150_000, 400_000)
        item = event(number, at=at, usage=usage, batch=rng.random() < 0.3, task_id=f"r{number % 17}")
        events.append(item | {"provider": provider, "model": model})
    load(events)
    NegotiatedDiscount.objects.create(
        provider="", percent=Decimal("3.333"), effective_from=datetime(2026, 11, 4, 5, 6, 7, tzinfo=UTC)
    )
    NegotiatedDiscount.objects.create(
        provider="google",
        percent=Decimal("17.125"),
        effective_from=datetime(2026, 11, 12, 1, tzinfo=UTC),
        effective_to=datetime(2026, 11, 21, 22, 30, tzinfo=UTC),
    )
    run = reprice_run_execute(
        run_id=reprice_run_create(
            trigger="test", scopes=[RepriceScope(None, None, datetime(2026, 11, 1, tzinfo=UTC))]
        ).pk
    )
    assert run.calls_scanned == 400 and run.calls_repriced > 250

    book = PriceBook.load()
    rollup_sums = defaultdict(lambda: defaultdict(Decimal))
    for call in Call.objects.all():
        reference = book.price(
            provider=call.provider,
            model=call.model,
            tokens={token_type: getattr(call, token_type) for token_type in TOKEN_TYPES},
            at=call.timestamp,
            batch=call.batch,
        )
        assert call.cost_usd == reference.total_usd, (call.event_id, call.provider, call.model)
        key = (call.timestamp.date(), call.team_id, call.agent_id, call.provider, call.model)
        for token_type, amount in reference.cost_by_type.items():
            rollup_sums[key][token_type] += amount
        rollup_sums[key]["unpriced"] += 0 if reference.priced else 1
    for rollup in DailyRollup.objects.all():
        expected = rollup_sums[rollup.day, rollup.team_id, rollup.agent_id, rollup.provider, rollup.model]
        assert rollup.unpriced_calls == expected["unpriced"]
        for token_type in TOKEN_TYPES:
            assert getattr(rollup, f"cost_{token_type}_usd") == expected[token_type]
    # the minute rollup (recent calls only) and tasks still equal their calls
    for task in Task.objects.all():
        calls = Call.objects.filter(team_id=task.team_id, task_id=task.task_id)
        assert task.cost_usd == sum(call.cost_usd or 0 for call in calls)
        assert task.unpriced_calls == calls.filter(cost_usd__isnull=True).count()
    for minute in RecentRollup.objects.all():
        calls = Call.objects.filter(
            team_id=minute.team_id, agent_id=minute.agent_id, timestamp__gte=minute.minute,
            timestamp__lt=minute.minute + timedelta(minutes=1),
        )  # fmt: skip
        assert minute.cost_usd == sum(call.cost_usd or 0 for call in calls)
    assert RepriceRun.objects.get(pk=run.pk).calls_per_second > 0


def test_the_reprice_command_reprices_from_a_month_on(db):
    from io import StringIO

    from django.core.management import CommandError, call_command

    # given: a November call at the list price, then a discount written straight to the table (no run)
    acme_price()
    usage = {"uncached_input": 10_000, "output": 1_000}
    load([event(1, at=datetime(2026, 11, 5, tzinfo=UTC), usage=usage)])
    NegotiatedDiscount.objects.create(
        provider="", percent=Decimal(10), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )

    # when: finops reprice --since 2026-11
    out = StringIO()
    call_command("reprice", "--since", "2026-11", stdout=out)

    # then: the call costs 90% of its list price, and the command said so
    assert Call.objects.get().cost_usd == sum(
        expected_cost(usage, batch=False, percent_off=Decimal(10)).values()
    )
    assert "1 changed" in out.getvalue() and "months re-priced: 2026-11" in out.getvalue()
    with pytest.raises(CommandError, match="--since: month must be YYYY-MM, e.g. 2026-11; got '2026-13'"):
        call_command("reprice", "--since", "2026-13")


def test_a_run_that_failed_midway_keeps_its_done_months_and_finishes_when_run_again(db, monkeypatch):
    # given: calls in October and November at the list price, and a 10% discount on both
    acme_price()
    usage = {"uncached_input": 20_000, "output": 2_000}
    load([event(number, at=datetime(2026, 10 + number, 5, tzinfo=UTC), usage=usage) for number in (0, 1)])
    _, run = discount_create(
        principal=None, provider="acme", percent=Decimal(10), effective_from=datetime(2026, 10, 1, tzinfo=UTC)
    )
    real = reprice._month_reprice

    def november_fails(**kwargs):
        if kwargs["month"] == NOVEMBER:
            raise ConnectionError("database went away")
        return real(**kwargs)

    # when: the run fails in November
    monkeypatch.setattr(reprice, "_month_reprice", november_fails)
    with pytest.raises(ConnectionError):
        reprice_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.months_repriced, run.calls_repriced) == ("failed", ["2026-10"], 1)
    assert "database went away" in run.error

    # then: run again (the task's retry), it does November only and keeps October's before/after
    monkeypatch.setattr(reprice, "_month_reprice", real)
    run = reprice_run_execute(run_id=run.pk)
    assert (run.status, run.months_repriced, run.calls_repriced) == ("done", ["2026-10", "2026-11"], 2)
    discounted = sum(expected_cost(usage, batch=False, percent_off=Decimal(10)).values())
    assert list(Call.objects.values_list("cost_usd", flat=True)) == [discounted, discounted]
    assert sorted(run.deltas.values_list("day", flat=True)) == [date(2026, 10, 5), date(2026, 11, 5)]


@pytest.mark.parametrize("november_closed", [False, True])
def test_a_reopened_month_re_priced_again_is_charged_its_price_change_once(db, november_closed):
    """October, closed, was adjusted for a discount in November. Reopened and re-priced, its calls carry
    the discount themselves: the adjustment in November goes while November is open, and is reversed in
    October itself once November is closed (what a closed month charged stays). Either way October's
    calls plus every adjustment for October equal its calls at the discounted price, once."""
    rng = random.Random(3)
    acme_price()
    usages = {number: random_usage(rng) for number in range(1, 41)}
    load([
        event(number, at=datetime(2026, 10, 2, tzinfo=UTC) + timedelta(hours=17 * number), usage=usage)
        for number, usage in usages.items()
    ])  # fmt: skip
    list_price = sum(
        sum(expected_cost(u, batch=False, percent_off=Decimal(0)).values()) for u in usages.values()
    )
    discounted = sum(
        sum(expected_cost(u, batch=False, percent_off=Decimal(10)).values()) for u in usages.values()
    )
    BillMonth.objects.create(month=OCTOBER, state=MonthState.CLOSED)
    _, run = discount_create(
        principal=None, provider="acme", percent=Decimal(10), effective_from=datetime(2026, 10, 1, tzinfo=UTC)
    )
    run = reprice_run_execute(run_id=run.pk)
    assert (
        sum(Adjustment.objects.filter(month=OCTOBER).values_list("usd", flat=True)) == discounted - list_price
    )
    if november_closed:
        BillMonth.objects.create(month=NOVEMBER, state=MonthState.CLOSED)
    BillMonth.objects.filter(month=OCTOBER).update(state=MonthState.OPEN)  # reopened

    for attempt in range(2):  # re-priced, then once more: nothing changes the second time
        reprice_run_execute(
            run_id=reprice_run_create(trigger="reopened", scopes=[RepriceScope.from_json(run.scopes[0])]).pk
        )
        calls = sum(Call.objects.values_list("cost_usd", flat=True))
        adjustments = Adjustment.objects.filter(month=OCTOBER)
        assert calls == discounted, attempt
        assert calls + sum(adjustments.values_list("usd", flat=True)) == discounted, attempt
        if november_closed:  # November keeps what it charged; October takes it back
            assert set(adjustments.values_list("shown_in", flat=True)) == {NOVEMBER, OCTOBER}
            assert (
                sum(adjustments.filter(shown_in=OCTOBER).values_list("usd", flat=True))
                == list_price - discounted
            )
        else:
            assert not adjustments.exists()
