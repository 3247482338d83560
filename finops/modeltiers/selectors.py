"""Reads of the model-tier mapping, and the share of calls, tokens and dollars per model and tier.

One reader for the Models page and `GET /api/v1/models/usage`: `model_usage` sums the daily rollups
(per UTC day x team x agent x provider x model), never the calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Coalesce

from finops.kpis.selectors import Scope, scoped
from finops.kpis.series import days_in_window
from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES
from finops.modeltiers.models import UNMAPPED, ModelTier, Tier
from finops.pricing.catalog import catalog_model

# the seeds' target: under 20% of requests on flagship models (shown as the line on the Models page)
FLAGSHIP_SHARE_TARGET = 0.20
TIERS: tuple[str, ...] = (*Tier.values, UNMAPPED)


@dataclass(frozen=True)
class TierMap:
    """The mapping as read once: tier_of() looks a call's model up by its own name, then by the price
    catalog's name for it (a dated snapshot takes its model's tier); else UNMAPPED."""

    tiers: dict[tuple[str, str], str]

    def tier_of(self, *, provider: str, model: str) -> str:
        key = (provider.lower(), model.lower())
        if key in self.tiers:
            return self.tiers[key]
        entry = catalog_model(provider.lower(), model)
        if entry is not None:
            for catalog_key in (
                (key[0], entry.model_id.lower()),
                (entry.provider_id, entry.model_id.lower()),
            ):
                if catalog_key in self.tiers:
                    return self.tiers[catalog_key]
        return UNMAPPED


def tier_map() -> TierMap:
    """The whole mapping (org data every principal may read: see finops/modeltiers/models.py)."""
    return TierMap(
        tiers={
            (provider.lower(), model.lower()): tier
            for provider, model, tier in ModelTier.objects.values_list("provider", "model", "tier")
        }
    )


@dataclass
class UsageTotals:
    calls: int = 0
    unpriced_calls: int = 0
    tokens: int = 0  # all six token types
    cost_usd: Decimal = Decimal(0)  # priced calls only: unpriced ones are counted, never $0

    def add(self, other: UsageTotals) -> None:
        self.calls += other.calls
        self.unpriced_calls += other.unpriced_calls
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd

    @property
    def known_cost_usd(self) -> Decimal | None:
        """The priced calls' cost; None (unknown, never $0) when there are calls and none is priced."""
        return None if self.calls and self.unpriced_calls == self.calls else self.cost_usd


@dataclass
class ModelRow:
    provider: str
    model: str
    tier: str
    totals: UsageTotals = field(default_factory=UsageTotals)


@dataclass
class ModelUsage:
    """A window's calls, tokens and priced spend per model and per tier, and per day per tier."""

    start: date  # first day
    end: date  # exclusive
    models: list[ModelRow]  # costliest first
    tiers: dict[str, UsageTotals]  # every tier of TIERS, in that order, also at zero
    days: list[date]
    calls_by_day: dict[str, list[int]]  # per tier, aligned with days
    total: UsageTotals

    def share(self, tier: str, measure: str) -> float | None:
        """A tier's share of calls, tokens or cost_usd (None when the window has none of it)."""
        whole = getattr(self.total, measure)
        return float(getattr(self.tiers[tier], measure) / whole) if whole else None

    @property
    def flagship_share(self) -> float | None:
        """% of requests on flagship models: flagship calls ÷ every call (unmapped ones included)."""
        return self.share(Tier.FLAGSHIP, "calls")

    @property
    def flagship_share_if_unmapped_were_flagship(self) -> float | None:
        """The most the share could be, were every unmapped model flagship."""
        if not self.total.calls:
            return None
        return (self.tiers[Tier.FLAGSHIP].calls + self.tiers[UNMAPPED].calls) / self.total.calls

    def flagship_share_by_day(self) -> list[float | None]:
        return [
            (flagship / all_calls if all_calls else None)
            for flagship, all_calls in zip(
                self.calls_by_day[Tier.FLAGSHIP],
                [sum(day) for day in zip(*self.calls_by_day.values(), strict=True)],
                strict=True,
            )
        ]


def model_usage(
    *, scope: Scope, start: date, end: date, tiers: TierMap | None = None, by_day: bool = True
) -> ModelUsage:
    """Calls, tokens and priced spend per model and tier over the UTC days [start, end), in one query
    of the daily rollups; `by_day` also spreads each tier's calls over the days (the page's chart; the
    API, which takes any window, leaves it out)."""
    tiers = tiers or tier_map()
    rows = (
        scoped(DailyRollup.objects.filter(day__gte=start, day__lt=end), scope)
        .values(*(("day",) if by_day else ()), "provider", "model")
        .annotate(
            sum_calls=Coalesce(Sum("calls"), 0),
            sum_unpriced=Coalesce(Sum("unpriced_calls"), 0),
            sum_cost=Coalesce(Sum("cost_usd"), Decimal(0)),
            **{f"sum_{token_type}": Coalesce(Sum(token_type), 0) for token_type in TOKEN_TYPES},
        )
        .order_by()
    )
    days = days_in_window(start=start, end=end) if by_day else []
    index = {day: position for position, day in enumerate(days)}
    by_model: dict[tuple[str, str], ModelRow] = {}
    by_tier = {tier: UsageTotals() for tier in TIERS}
    calls_by_day = {tier: [0] * len(days) for tier in TIERS}
    total = UsageTotals()
    for row in rows:
        key = (row["provider"], row["model"])
        if key not in by_model:
            by_model[key] = ModelRow(*key, tier=tiers.tier_of(provider=key[0], model=key[1]))
        model = by_model[key]
        totals = UsageTotals(
            calls=row["sum_calls"],
            unpriced_calls=row["sum_unpriced"],
            tokens=sum(row[f"sum_{token_type}"] for token_type in TOKEN_TYPES),
            cost_usd=row["sum_cost"],
        )
        model.totals.add(totals)
        by_tier[model.tier].add(totals)
        total.add(totals)
        if by_day:
            calls_by_day[model.tier][index[row["day"]]] += totals.calls
    models = sorted(
        by_model.values(),
        key=lambda item: (-item.totals.cost_usd, -item.totals.calls, item.provider, item.model),
    )
    return ModelUsage(
        start=start,
        end=end,
        models=models,
        tiers=by_tier,
        days=days,
        calls_by_day=calls_by_day,
        total=total,
    )


def model_tier_taken(*, provider: str, model: str, other_than: ModelTier | None = None) -> bool:
    """Whether another row of the mapping names this model already (the mapping is org-wide: no team's)."""
    rows = ModelTier.objects.filter(provider=provider, model=model)
    if other_than is not None:
        rows = rows.exclude(pk=other_than.pk)
    return rows.exists()
