"""Reads of the guardrails: allowances with their live usage (what the API and the pages show)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from finops.guardrails.models import Allowance, AllowanceUsage, Reservation
from finops.guardrails.windows import window_bounds


@dataclass(frozen=True)
class AllowanceLive:
    window_start: datetime
    resets_at: datetime
    used_tokens: int = 0
    used_usd: Decimal = Decimal(0)
    unpriced_calls: int = 0
    reserved_tokens: int = 0
    reserved_usd: Decimal = Decimal(0)


def allowances_live(*, allowances: list[Allowance], now: datetime | None = None) -> dict[int, AllowanceLive]:
    """Each allowance's current window, what its calls used and what open reservations hold, by id:
    two queries however many allowances."""
    now = now or timezone.now()
    bounds = {allowance.pk: window_bounds(window=allowance.window, at=now) for allowance in allowances}
    if not bounds:
        return {}
    current = Q()
    for allowance_id, (start, _) in bounds.items():
        current |= Q(allowance_id=allowance_id, window_start=start)
    used = {
        row["allowance_id"]: row
        for row in AllowanceUsage.objects.filter(current).values(
            "allowance_id", "used_tokens", "used_usd", "unpriced_calls"
        )
    }
    reserved = {
        row["allowance_id"]: row
        for row in Reservation.objects.filter(
            allowance_id__in=bounds, released_at__isnull=True, settled_at__isnull=True, expires_at__gt=now
        )
        .values("allowance_id")
        .annotate(tokens=Coalesce(Sum("estimated_tokens"), 0), usd=Coalesce(Sum("estimated_usd"), Decimal(0)))
    }
    live = {}
    for allowance_id, (start, end) in bounds.items():
        usage = used.get(allowance_id, {})
        holds = reserved.get(allowance_id, {})
        live[allowance_id] = AllowanceLive(
            window_start=start,
            resets_at=end,
            used_tokens=usage.get("used_tokens", 0),
            used_usd=usage.get("used_usd", Decimal(0)),
            unpriced_calls=usage.get("unpriced_calls", 0),
            reserved_tokens=holds.get("tokens", 0),
            reserved_usd=holds.get("usd", Decimal(0)),
        )
    return live


def allowance_used_fraction(*, allowance: Allowance, live: AllowanceLive) -> Decimal:
    """How much of its limit an allowance's current window used (reservations aside): the larger of its
    dollar and token fractions; a zero limit counts as used up. The allowance alert and the sre home
    both judge `warn_at` against this."""
    fractions = []
    if allowance.limit_usd is not None:
        fractions.append(live.used_usd / allowance.limit_usd if allowance.limit_usd else Decimal(1))
    if allowance.limit_tokens is not None:
        fractions.append(
            Decimal(live.used_tokens) / allowance.limit_tokens if allowance.limit_tokens else Decimal(1)
        )
    return max(fractions, default=Decimal(0))


@dataclass(frozen=True)
class AllowanceUse:
    allowance: Allowance
    live: AllowanceLive
    fraction: Decimal

    @property
    def state(self) -> str:
        """ "over" at or past its limit, "near" at or past its warn_at, else "ok"."""
        if self.fraction >= 1:
            return "over"
        return "near" if self.fraction >= Decimal(str(self.allowance.warn_at)) else "ok"


def allowances_by_use(*, allowances: list[Allowance], now: datetime | None = None) -> list[AllowanceUse]:
    """Allowances (already restricted by the caller) with their current window's use, most used first."""
    live = allowances_live(allowances=allowances, now=now)
    uses = [
        AllowanceUse(
            allowance,
            live[allowance.pk],
            allowance_used_fraction(allowance=allowance, live=live[allowance.pk]),
        )
        for allowance in allowances
    ]
    return sorted(uses, key=lambda use: (-use.fraction, use.allowance.pk))
