"""Each likely cause of a reconciliation line, on data built to have it, and a near miss that has not."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from finops.bills.closing import month_close
from finops.bills.reconcile import Cause, LineStatus, reconciliation
from tests.bills.conftest import MONTH, day

SONNET, SONNET_DATED = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5"


def line_of(result, on: date, token_type: str, model: str = SONNET):
    (found,) = [
        line for line in result.lines if (line.day, line.model, line.token_type) == (on, model, token_type)
    ]
    return found


def test_usage_from_a_workspace_finops_never_saw(month):
    # the agents' workspace matches telemetry; another workspace's 40,000 tokens are the whole excess
    month.telemetry(day(6), SONNET, "uncached_input", 1_000_000, "3.00")
    month.statement(day(6), SONNET_DATED, "uncached_input", 1_000_000, "3.00", workspace_id="wrkspc_agents")
    month.statement(day(6), SONNET_DATED, "uncached_input", 40_000, "0.12", workspace_id="wrkspc_notebooks")

    line = line_of(reconciliation(provider="anthropic", month=MONTH), day(6), "uncached_input")

    assert line.status == LineStatus.UNDER and line.variance_usd == Decimal("0.12")
    assert line.cause == Cause.UNSEEN_KEY
    assert "wrkspc_notebooks" in line.note_of_cause and "wrkspc_agents" not in line.note_of_cause


def test_an_api_key_never_seen_found_by_dollars_when_the_cost_report_has_no_tokens(month):
    month.telemetry(day(6), SONNET, "output", 100_000, "1.50")
    month.statement(day(6), SONNET, "output", None, "1.50", api_key_id="key_agents")
    month.statement(day(6), SONNET, "output", None, "0.45", api_key_id="key_laptop")

    line = line_of(reconciliation(provider="anthropic", month=MONTH), day(6), "output")

    assert line.statement_tokens is None
    assert line.cause == Cause.UNSEEN_KEY and "key_laptop" in line.note_of_cause


def test_an_excess_no_single_key_accounts_for_names_no_key(month):
    month.telemetry(day(6), SONNET, "uncached_input", 1_000_000, "3.00")
    month.statement(day(6), SONNET, "uncached_input", 520_000, "1.56", workspace_id="wrkspc_a")
    month.statement(day(6), SONNET, "uncached_input", 520_000, "1.56", workspace_id="wrkspc_b")

    line = line_of(reconciliation(provider="anthropic", month=MONTH), day(6), "uncached_input")

    assert line.status == LineStatus.UNDER and line.cause is None


def test_a_model_priced_differently_shows_both_rates(month):
    month.telemetry(day(7), SONNET, "output", 100_000, "1.50")
    month.statement(day(7), SONNET_DATED, "output", 100_000, "1.80")

    line = line_of(reconciliation(provider="anthropic", month=MONTH), day(7), "output")

    assert line.status == LineStatus.UNDER and line.cause == Cause.RATE_DIFFERS
    # $1.50 and $1.80 for 0.1 MTok
    assert line.telemetry_rate == Decimal(15) and line.statement_rate == Decimal(18)
    assert "$15.000000 per MTok" in line.note_of_cause and "$18.000000 per MTok" in line.note_of_cause


def test_a_price_change_in_the_middle_of_the_month(month):
    # the provider cut its output rate from $15 to $12 on the 5th; finops kept pricing at $15
    for number in range(1, 11):
        month.telemetry(day(number), SONNET, "output", 100_000, "1.50")
        month.statement(day(number), SONNET, "output", 100_000, "1.50" if number < 5 else "1.20")

    result = reconciliation(provider="anthropic", month=MONTH)

    for number in range(1, 5):
        assert line_of(result, day(number), "output").status == LineStatus.MATCHED
    for number in range(5, 11):
        line = line_of(result, day(number), "output")
        assert line.status == LineStatus.OVER and line.cause == Cause.PRICE_CHANGE, number
        assert "statement's rate" in line.note_of_cause and "on 2026-11-05" in line.note_of_cause
        assert "$15.000000" in line.note_of_cause and "$12.000000" in line.note_of_cause


def test_a_batch_discount_the_telemetry_did_not_know(month):
    # the statement bills the day's output through the batch API at half price; telemetry saw no batch call
    month.telemetry(day(8), SONNET, "output", 100_000, "1.50")
    month.statement(day(8), SONNET, "output", 100_000, "0.75", batch=True, service_tier="batch")
    # and the other way round: calls reported as batch, billed at the standard rate
    month.telemetry(day(9), SONNET, "output", 100_000, "0.75", batch_calls=3)
    month.statement(day(9), SONNET, "output", 100_000, "1.50", service_tier="standard")

    result = reconciliation(provider="anthropic", month=MONTH)

    billed_batch = line_of(result, day(8), "output")
    assert billed_batch.status == LineStatus.OVER and billed_batch.cause == Cause.BATCH_OR_TIER
    assert "batch" in billed_batch.note_of_cause
    reported_batch = line_of(result, day(9), "output")
    assert reported_batch.status == LineStatus.UNDER and reported_batch.cause == Cause.BATCH_OR_TIER
    assert "3 calls" in reported_batch.note_of_cause


def test_a_priority_tier_is_a_tier_cause(month):
    month.telemetry(day(8), SONNET, "output", 100_000, "1.50")
    month.statement(day(8), SONNET, "output", 100_000, "1.875", service_tier="priority")

    line = line_of(reconciliation(provider="anthropic", month=MONTH), day(8), "output")

    assert line.cause == Cause.BATCH_OR_TIER and "priority" in line.note_of_cause


def test_cache_writes_billed_at_the_other_ttl(month):
    # telemetry: 50,000 written for 5 minutes and 10,000 for an hour; the bill has them the other way
    month.telemetry(day(9), SONNET, "cache_write_5m", 50_000, "0.1875")
    month.telemetry(day(9), SONNET, "cache_write_1h", 10_000, "0.06")
    month.statement(day(9), SONNET, "cache_write_5m", 10_000, "0.0375")
    month.statement(day(9), SONNET, "cache_write_1h", 50_000, "0.30")

    result = reconciliation(provider="anthropic", month=MONTH)

    five, hour = line_of(result, day(9), "cache_write_5m"), line_of(result, day(9), "cache_write_1h")
    assert (five.status, hour.status) == (LineStatus.OVER, LineStatus.UNDER)
    assert five.cause == hour.cause == Cause.CACHE_TTL
    assert "40,000" in five.note_of_cause


def test_cache_write_differences_that_do_not_mirror_are_not_a_ttl_swap(month):
    month.telemetry(day(9), SONNET, "cache_write_5m", 50_000, "0.1875")
    month.telemetry(day(9), SONNET, "cache_write_1h", 10_000, "0.06")
    month.statement(day(9), SONNET, "cache_write_5m", 10_000, "0.0375")
    month.statement(day(9), SONNET, "cache_write_1h", 20_000, "0.12")

    result = reconciliation(provider="anthropic", month=MONTH)

    assert line_of(result, day(9), "cache_write_5m").cause != Cause.CACHE_TTL
    assert line_of(result, day(9), "cache_write_1h").cause != Cause.CACHE_TTL


def test_a_day_missing_from_the_pull(month):
    month.both(day(11), SONNET, "output", 100_000, "1.50")
    month.telemetry(day(12), SONNET, "output", 100_000, "1.50")
    month.telemetry(day(12), HAIKU, "output", 100_000, "0.50")
    # on the 13th the statement has one model: the other's line is not a missing day
    month.both(day(13), SONNET, "output", 100_000, "1.50")
    month.telemetry(day(13), HAIKU, "output", 100_000, "0.50")

    result = reconciliation(provider="anthropic", month=MONTH)

    for model in (SONNET, HAIKU):
        line = line_of(result, day(12), "output", model)
        assert line.status == LineStatus.ONLY_IN_TELEMETRY and line.cause == Cause.DAY_MISSING
    haiku_13 = line_of(result, day(13), "output", HAIKU)
    assert haiku_13.status == LineStatus.ONLY_IN_TELEMETRY and haiku_13.cause is None


def test_telemetry_that_arrived_after_the_month_closed(month):
    # the month was closed with 900,000 tokens of the 13th; 100,000 more arrived late, an adjustment
    month.telemetry(day(13), SONNET, "uncached_input", 900_000, "2.70")
    month.statement(day(13), SONNET_DATED, "uncached_input", 1_000_000, "3.00")
    month.telemetry(day(14), SONNET, "uncached_input", 900_000, "2.70")
    month.statement(day(14), SONNET_DATED, "uncached_input", 1_000_000, "3.00")
    month_close(principal=None, month=MONTH, reason="closed before the late calls")
    month.telemetry(day(13), SONNET, "uncached_input", 100_000, "0.30")  # the writer's late rollup

    result = reconciliation(provider="anthropic", month=MONTH)

    late = line_of(result, day(13), "uncached_input")
    assert late.status == LineStatus.UNDER and late.cause == Cause.LATE_TELEMETRY
    assert "$0.300000" in late.note_of_cause and "after the month closed" in late.note_of_cause
    # the 14th has the same gap and no late event: finops cannot say why
    assert line_of(result, day(14), "uncached_input").cause is None
    assert result.with_cause_usd == Decimal("0.30") and result.without_cause_usd == Decimal("0.30")
