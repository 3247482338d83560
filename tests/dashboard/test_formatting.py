"""Money as text goes Decimal to string, never through float, and small amounts keep their digits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dashboard.formatting import alert_figure, count, percent, ratio, usd, usd_column, usd_exact


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "—"),
        (Decimal(0), "$0.00"),
        (Decimal("1234.565"), "$1,234.56"),  # half-even, not float's guess
        (Decimal("12.345"), "$12.34"),
        (Decimal("0.104576"), "$0.1046"),
        (Decimal("0.0042"), "$0.004200"),
        (Decimal("0.0000004"), "< $0.000001"),
        (Decimal("-3.5"), "-$3.50"),
        (Decimal("0.1") + Decimal("0.2"), "$0.3000"),
    ],
)
def test_usd(amount, text):
    assert usd(amount) == text


def test_usd_exact_keeps_micro_dollars():
    assert usd_exact(Decimal("12.340018499")) == "$12.340018"
    assert usd_exact(None) == "—"


def test_usd_column_uses_one_precision_per_column():
    assert usd_column([Decimal("3.8"), Decimal("0.66"), Decimal(0)]) == ["$3.8000", "$0.6600", "$0.0000"]
    assert usd_column([Decimal("1200"), Decimal("3.8")]) == ["$1,200.00", "$3.80"]
    assert usd_column([Decimal("0.004")]) == ["$0.004000"]


def test_ratios_and_counts():
    assert percent(0.4613) == "46.1%" and percent(None) == "—"
    assert ratio(1.25) == "1.25" and ratio(None) == "—"
    assert count(1_760_000) == "1,760,000"


@pytest.mark.parametrize(
    ("value", "kind", "metric", "text"),
    [
        (Decimal("0.704836853831"), "cache_collapse", None, "70.5 points"),
        (Decimal("0.2"), "cache_collapse", None, "20.0 points"),
        (Decimal("0.93"), "allowance", None, "93%"),
        (Decimal("1234.5"), "forecast", None, "$1,234.50"),
        (Decimal("12.25"), "anomaly", None, "$12.25"),
        (Decimal("3.5"), "runaway_task", "cost_usd", "$3.50"),
        (Decimal("40"), "runaway_task", "steps", "40"),
        (Decimal("12.5"), "runaway_task", "steps", "12.5"),
        (Decimal("0.4215"), "threshold", "cache_hit_rate", "42.1%"),
        (Decimal("1.75"), "threshold", "step_inflation_ratio", "1.75"),
        (Decimal("1200000"), "threshold", "tokens", "1,200,000"),
        (Decimal("0.3"), "threshold", "cost_per_successful_task_usd", "$0.3000"),
        (None, "threshold", "calls", "—"),
    ],
)
def test_an_alert_figure_reads_in_its_rules_unit(value, kind, metric, text):
    assert alert_figure(value, kind=kind, metric=metric) == text
