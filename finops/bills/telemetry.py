"""The telemetry side of a bill month: what finops' own ledger says a provider's month cost, per UTC day,
model and token type, read from the daily rollups (never the calls). Reconciliation and chargeback read
the month through here, so a closed month can be answered from its snapshot in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import QuerySet, Sum

from finops.bills.models import ClosedMonthRollup
from finops.bills.months import month_bounds, month_is_closed
from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES


@dataclass(frozen=True)
class TelemetryCell:
    day: date
    model: str
    token_type: str
    tokens: int
    usd: Decimal


def live_rollups(*, month: date) -> QuerySet[DailyRollup]:
    """The ledger's daily rollups of the month as they are now (a closed month's late events included)."""
    start, end = month_bounds(month)
    return DailyRollup.objects.filter(day__gte=start.date(), day__lt=end.date())


def month_rollups(*, month: date, closed: bool | None = None) -> QuerySet:
    """The month's per-day rollups as bills reads them: the snapshot taken at the close while the month
    is closed, else the live rollups. Both have DailyRollup's columns (day, team, agent, provider,
    model, calls, cost_usd, the six token counts and their costs), so a caller sums either the same way.
    `closed`: the month's state when the caller has read it already."""
    if closed is None:
        closed = month_is_closed(month)
    if closed:
        return ClosedMonthRollup.objects.filter(month=month)
    return live_rollups(month=month)


def telemetry_month(*, provider: str, month: date, closed: bool | None = None) -> list[TelemetryCell]:
    """Every (day, model, token type) of the provider's month with tokens or cost, in that order; a
    closed month's as it was when it closed (`closed`: its state, when the caller has read it)."""
    sums = {name: Sum(name) for name in TOKEN_TYPES}
    sums |= {f"cost_{name}_usd": Sum(f"cost_{name}_usd") for name in TOKEN_TYPES}
    rows = (
        month_rollups(month=month, closed=closed)
        .filter(provider=provider)
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


def telemetry_calls_month(
    *, provider: str, month: date, closed: bool | None = None
) -> dict[tuple[date, str], TelemetryCalls]:
    """Per (day, model) of the provider's month: the calls and how many of them ran through a batch API
    (reconciliation's batch-discount cause compares them with the statement's batch lines)."""
    rows = (
        month_rollups(month=month, closed=closed)
        .filter(provider=provider)
        .values("day", "model")
        .annotate(calls=Sum("calls"), batch_calls=Sum("batch_calls"))
    )
    return {(row["day"], row["model"]): TelemetryCalls(row["calls"], row["batch_calls"]) for row in rows}


def telemetry_providers(*, month: date) -> set[str]:
    """The providers the month's telemetry names."""
    return set(month_rollups(month=month).order_by().values_list("provider", flat=True).distinct())
