"""Reconciliation of a provider's month (SPEC.md, "Bills"): each figure against arithmetic done here."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.test import override_settings

from finops.bills.matching import model_key, model_normalise
from finops.bills.models import BillMonth, MonthState, ReconciliationLine
from finops.bills.reconcile import Cause, LineStatus, reconciliation
from tests.bills.conftest import MONTH, USAGE_SOURCE, day

SONNET, SONNET_DATED = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5"


def lines_by_key(result):
    return {(line.day, line.model, line.token_type or line.line_item): line for line in result.lines}


def test_model_names_match_across_aliases_and_snapshots():
    assert model_key(provider="anthropic", model=SONNET) == model_key(
        provider="anthropic", model=SONNET_DATED
    )
    assert model_key(provider="openai", model="gpt-4o-2024-08-06") == model_key(
        provider="openai", model="gpt-4o"
    )
    # names the catalog does not know: the normaliser drops the snapshot date
    assert model_normalise("Acme-Large-2-20251101") == "acme-large-2"
    assert model_normalise("acme-large-2@2025-11-01") == "acme-large-2"
    assert model_normalise("acme-large-2-latest") == "acme-large-2"
    assert model_normalise("acme-large-2") == "acme-large-2"
    assert model_key(provider="acme", model="acme-large-2-20251101") == model_key(
        provider="acme", model="acme-large-2"
    )


def test_statuses_totals_and_the_shape_of_a_month(month):
    # given: telemetry names the model by its alias, the statement by its dated snapshot
    month.telemetry(day(3), SONNET, "uncached_input", 1_000_000, "3.00")
    month.statement(day(3), SONNET_DATED, "uncached_input", 1_000_000, "3.00")
    # 0.27% apart: within the default 0.5%
    month.telemetry(day(3), SONNET, "output", 100_000, "1.500")
    month.statement(day(3), SONNET_DATED, "output", 100_000, "1.504")
    # reasoning is billed as output: compared with the statement's output
    month.telemetry(day(4), SONNET, "output", 150_000, "2.25")
    month.telemetry(day(4), SONNET, "reasoning", 50_000, "0.75")
    month.statement(day(4), SONNET_DATED, "output", 200_000, "2.00")
    month.statement(day(4), SONNET_DATED, "cache_read", 10_000, "0.003")
    month.telemetry(day(4), SONNET, "cache_write_5m", 20_000, "0.075")
    # a line item that is not tokens is a line of its own
    month.statement(day(3), "", "", None, "0.25", line_item="Web search")

    result = reconciliation(provider="anthropic", month=MONTH)

    lines = lines_by_key(result)
    assert result.provider == "anthropic" and result.month == MONTH and result.state == MonthState.OPEN
    assert result.statement_basis == "cost"
    assert result.telemetry_usd == Decimal("3.00") + Decimal("1.500") + Decimal("3.00") + Decimal("0.075")
    assert result.statement_usd == Decimal("3.00") + Decimal("1.504") + Decimal("2.00") + Decimal(
        "0.003"
    ) + Decimal("0.25")
    assert result.variance_usd == result.statement_usd - result.telemetry_usd
    assert result.variance_percent == result.variance_usd * 100 / result.telemetry_usd
    assert result.invoice_usd is None
    assert len(result.lines) == 6

    assert lines[(day(3), SONNET, "uncached_input")].status == LineStatus.MATCHED
    assert lines[(day(3), SONNET, "uncached_input")].model_names == {SONNET, SONNET_DATED}
    assert lines[(day(3), SONNET, "output")].status == LineStatus.MATCHED
    output = lines[(day(4), SONNET, "output")]
    assert (output.telemetry_tokens, output.statement_tokens) == (200_000, 200_000)
    assert output.status == LineStatus.OVER and output.variance_usd == Decimal("-1.00")
    assert lines[(day(4), SONNET, "cache_read")].status == LineStatus.ONLY_IN_STATEMENT
    assert lines[(day(4), SONNET, "cache_write_5m")].status == LineStatus.ONLY_IN_TELEMETRY
    search = lines[(day(3), "", "Web search")]
    assert search.token_type == "" and search.status == LineStatus.ONLY_IN_STATEMENT
    assert search.statement_usd == Decimal("0.25") and search.cause == Cause.NON_TOKEN_ITEM

    # nothing marked explained yet: every unmatched dollar is unexplained
    unmatched = Decimal("1.00") + Decimal("0.003") + Decimal("0.075") + Decimal("0.25")
    assert result.explained_usd == 0 and result.unexplained_usd == unmatched


def test_the_tolerance_is_a_setting(month):
    month.telemetry(day(3), SONNET, "output", 100_000, "1.500")
    month.statement(day(3), SONNET, "output", 100_000, "1.504")
    with override_settings(FINOPS_RECONCILE_TOLERANCE=Decimal("0.001")):
        assert reconciliation(provider="anthropic", month=MONTH).lines[0].status == LineStatus.UNDER
    assert reconciliation(provider="anthropic", month=MONTH).lines[0].status == LineStatus.MATCHED


def test_the_invoice_and_the_month_state(month):
    month.both(day(3), SONNET, "output", 100_000, "1.50")
    month.statement(day(30), "", "", None, "1.40", source="focus:november.csv", line_item="Claude usage")
    month.statement(day(30), "", "", None, "0.10", source="focus:november.csv", line_item="Tax")
    BillMonth.objects.create(month=MONTH, state=MonthState.CLOSED)

    result = reconciliation(provider="anthropic", month=MONTH)

    assert result.invoice_usd == Decimal("1.50") and result.invoice_sources == ["focus:november.csv"]
    assert result.state == MonthState.CLOSED
    assert result.statement_usd == Decimal("1.50")  # the invoice is not the statement


def test_without_a_cost_report_the_usage_report_is_priced_at_finops_rates(month):
    # claude-sonnet-4-5 lists $3 per MTok of input and $15 of output; batch calls are half price
    month.telemetry(day(3), SONNET, "uncached_input", 2_000_000, "6.00")
    month.telemetry(day(3), SONNET, "output", 100_000, "0.75", batch_calls=1)
    month.statement(
        day(3), SONNET_DATED, "uncached_input", 2_000_000, None, kind="usage", source=USAGE_SOURCE
    )
    month.statement(
        day(3),
        SONNET_DATED,
        "output",
        100_000,
        None,
        kind="usage",
        source=USAGE_SOURCE,
        batch=True,
        service_tier="batch",
    )
    month.statement(day(3), "acme-large-2", "output", 5_000, None, kind="usage", source=USAGE_SOURCE)

    result = reconciliation(provider="anthropic", month=MONTH)

    lines = lines_by_key(result)
    assert result.statement_basis == "usage_priced" and result.statement_source == USAGE_SOURCE
    assert lines[(day(3), SONNET, "uncached_input")].statement_usd == Decimal("6.00")
    assert lines[(day(3), SONNET, "output")].statement_usd == Decimal("0.75")
    assert lines[(day(3), SONNET, "output")].status == LineStatus.MATCHED
    unknown = lines[(day(3), "acme-large-2", "output")]
    # no price: unknown, never $0, and not added to the statement's total
    assert unknown.statement_usd is None and unknown.variance_usd is None
    assert unknown.cause == Cause.UNPRICED_MODEL
    assert result.statement_usd == Decimal("6.75")


def test_of_two_sources_of_one_report_the_last_pulled_is_read(month):
    month.telemetry(day(3), SONNET, "output", 100_000, "1.50")
    month.statement(
        day(3),
        SONNET,
        "output",
        100_000,
        "1.50",
        source="anthropic_cost:7",
        pulled_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    month.statement(
        day(3),
        SONNET,
        "output",
        100_000,
        "1.60",
        source="anthropic_cost:3",
        pulled_at=datetime(2026, 12, 1, tzinfo=UTC),
    )

    result = reconciliation(provider="anthropic", month=MONTH)

    assert result.statement_source == "anthropic_cost:7" and result.statement_usd == Decimal("1.50")


def test_a_provider_with_nothing_answers_no_lines(month):
    result = reconciliation(provider="nobody", month=MONTH)
    assert result.lines == [] and result.statement_basis == "none" and result.statement_usd is None
    assert result.telemetry_usd == 0 and result.variance_usd is None


def test_other_providers_and_months_are_not_read(month):
    month.both(day(3), SONNET, "output", 100_000, "1.50")
    month.telemetry(day(3), "gpt-4o", "output", 100_000, "1.00", provider="openai")
    month.statement(day(3), "gpt-4o", "output", 100_000, "1.00", provider="openai", source="openai_costs:1")
    month.telemetry(datetime(2026, 12, 1).date(), SONNET, "output", 100_000, "9.00")
    month.telemetry(datetime(2026, 10, 31).date(), SONNET, "output", 100_000, "9.00")

    result = reconciliation(provider="anthropic", month=MONTH)

    assert [line.day for line in result.lines] == [day(3)]
    assert result.telemetry_usd == Decimal("1.50")


# --- line ids and notes ---------------------------------------------------------------------------------


def test_line_ids_are_stable_and_notes_are_totalled(month):
    month.both(day(3), SONNET, "uncached_input", 1_000_000, "3.00")
    month.telemetry(day(4), SONNET, "output", 100_000, "1.50")
    month.statement(day(4), SONNET, "output", 100_000, "1.80")
    month.telemetry(day(5), SONNET, "output", 100_000, "1.50")
    month.statement(day(5), SONNET, "output", 100_000, "1.00")

    first = reconciliation(provider="anthropic", month=MONTH)
    ids = {line.key: line.id for line in first.lines}
    assert len(set(ids.values())) == 3 and ReconciliationLine.objects.count() == 3

    ReconciliationLine.objects.filter(pk=ids[(day(4), SONNET, "output", "")]).update(
        note="contract price: see the order form", explained=True
    )
    month.both(day(6), SONNET, "output", 100_000, "1.50")  # a new line later in the month
    second = reconciliation(provider="anthropic", month=MONTH)

    for line in second.lines:
        if line.key in ids:
            assert line.id == ids[line.key]
    noted = lines_by_key(second)[(day(4), SONNET, "output")]
    assert noted.note == "contract price: see the order form" and noted.explained
    assert second.explained_usd == Decimal("0.30")
    assert second.unexplained_usd == Decimal("0.50")
    assert ReconciliationLine.objects.count() == 4
