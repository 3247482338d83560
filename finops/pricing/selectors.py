"""Reads of the organisation's prices and of re-pricing runs: the Prices pages and the API read here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from finops.pricing.models import RepriceDelta, RepriceRun


@dataclass(frozen=True)
class DayBeforeAfter:
    day: date
    before_usd: Decimal
    after_usd: Decimal
    calls: int
    adjusted: bool  # a closed month's day: the difference is an adjustment, the calls kept their cost

    @property
    def difference_usd(self) -> Decimal:
        return self.after_usd - self.before_usd


def reprice_runs(*, principal, limit: int = 50) -> list[RepriceRun]:
    """The newest runs the principal may see (organisation data: admin, finops, org-wide tokens)."""
    return list(RepriceRun.objects.restrict(principal, "view").select_related("requested_by")[:limit])


def reprice_run_deltas(*, run: RepriceRun) -> list[RepriceDelta]:
    """A run's before and after per team, provider, model and day, in day order."""
    return list(
        RepriceDelta.objects.filter(run=run)
        .select_related("team")
        .order_by("day", "team__slug", "provider", "model")
    )


def reprice_run_days(*, deltas: list[RepriceDelta]) -> list[DayBeforeAfter]:
    """The same, summed per UTC day (the chart's bars)."""
    days: dict[tuple[date, bool], list] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for delta in deltas:
        entry = days[delta.day, delta.adjusted]
        entry[0] += delta.before_usd
        entry[1] += delta.after_usd
        entry[2] += delta.calls
    return [
        DayBeforeAfter(day, before, after, calls, adjusted)
        for (day, adjusted), (before, after, calls) in sorted(days.items())
    ]
