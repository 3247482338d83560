"""The telemetry side of a bill month: what finops' own ledger says a provider's month cost, per UTC day,
model and token type, read from the daily rollups (never the calls). Reconciliation and chargeback read
the month through here, so a closed month can be answered from its snapshot in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Sum

from finops.bills.months import month_bounds
from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES


@dataclass(frozen=True)
class TelemetryCell:
    day: date
    model: str
    token_type: str
    tokens: int
    usd: Decimal


def telemetry_month(*, provider: str, month: date) -> list[TelemetryCell]:
    """Every (day, model, token type) of the provider's month with tokens or cost, in that order."""
    start, end = month_bounds(month)
    sums = {name: Sum(name) for name in TOKEN_TYPES}
    sums |= {f"cost_{name}_usd": Sum(f"cost_{name}_usd") for name in TOKEN_TYPES}
    rows = (
        DailyRollup.objects.filter(provider=provider, day__gte=start.date(), day__lt=end.date())
        .values("day", "model")
        .annotate(**sums)
        .order_by("day", "model")
    )
    cells = []
    for row in rows:
        for token_type in TOKEN_TYPES:
            tokens, usd = row[token_type] or 0, row[f"cost_{token_type}_usd"] or Decimal(0)
            if tokens or usd:
                cells.append(TelemetryCell(row["day"], row["model"], token_type, tokens, usd))
    return cells


@dataclass(frozen=True)
class TelemetryCalls:
    calls: int
    batch_calls: int


def telemetry_calls_month(*, provider: str, month: date) -> dict[tuple[date, str], TelemetryCalls]:
    """Per (day, model) of the provider's month: the calls and how many of them ran through a batch API
    (reconciliation's batch-discount cause compares them with the statement's batch lines)."""
    start, end = month_bounds(month)
    rows = (
        DailyRollup.objects.filter(provider=provider, day__gte=start.date(), day__lt=end.date())
        .values("day", "model")
        .annotate(calls=Sum("calls"), batch_calls=Sum("batch_calls"))
    )
    return {(row["day"], row["model"]): TelemetryCalls(row["calls"], row["batch_calls"]) for row in rows}


def telemetry_providers(*, month: date) -> set[str]:
    """The providers the month's telemetry names."""
    start, end = month_bounds(month)
    rows = DailyRollup.objects.filter(day__gte=start.date(), day__lt=end.date())
    return set(rows.values_list("provider", flat=True).distinct())
