"""Prompt caching over a window, for the Caching page: the hit rate per day and per prompt version,
when each agent's prompt version changed, cache writes against reads, and the dollars lost to misses.

Read from the rollups only: the daily rollups (per UTC day x team x agent x provider x model, with the
spend per token type), the per-day prompt-version rollup (a version's figures over the window) and the
all-time one (per agent x version: which version came before which).

**Miss cost** (the "dollars lost to misses"): for each day and model, what the uncached input cost
above what the same tokens would have cost read from the cache:

    cost of uncached_input x (1 - cache-read rate / input rate)

with the rates in force that day (price overrides, else the genai-prices catalog; batch and negotiated
discounts scale both rates alike, so the ratio holds for the discounted cost the rollups keep). It is an
upper bound: it treats every uncached input token as a miss, while some input can never come from a
cache (a call's new message, a task's first call). Unpriced calls have no cost, so they add nothing
(they are counted on the Overview); a model with no rates that day is left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache

from django.db.models import Sum
from django.db.models.functions import Coalesce

from finops.kpis.homes import prompt_version_sums
from finops.kpis.selectors import Scope, scoped
from finops.kpis.series import days_in_window
from finops.ledger.models import DailyRollup, PromptVersionRollup
from finops.pricing.services import PriceBook

_TOKEN_SUMS = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
_COST_SUMS = (
    "cost_uncached_input_usd",
    "cost_cache_read_usd",
    "cost_cache_write_5m_usd",
    "cost_cache_write_1h_usd",
)


@dataclass
class CacheDay:
    day: date
    uncached_input: int = 0
    cache_read: int = 0
    cache_write: int = 0  # 5-minute and 1-hour writes
    cost_uncached_input_usd: Decimal = Decimal(0)
    cost_cache_read_usd: Decimal = Decimal(0)
    cost_cache_write_usd: Decimal = Decimal(0)
    miss_cost_usd: Decimal = Decimal(0)

    @property
    def input_tokens(self) -> int:
        return self.uncached_input + self.cache_read + self.cache_write

    @property
    def cache_hit_rate(self) -> float | None:
        """Σ cache_read ÷ Σ total input (SPEC.md); None without input."""
        return self.cache_read / self.input_tokens if self.input_tokens else None

    def add(self, other: CacheDay) -> None:
        for name in (
            "uncached_input",
            "cache_read",
            "cache_write",
            "cost_uncached_input_usd",
            "cost_cache_read_usd",
            "cost_cache_write_usd",
            "miss_cost_usd",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class PromptVersion:
    team: str
    agent: str
    agent_id: int
    prompt_version: str
    introduced_at: datetime  # its first call ever
    first_call_at: datetime  # in the window
    last_call_at: datetime  # in the window
    calls: int  # the window's, as the two token sums
    cache_read: int
    input_tokens: int
    previous: str | None  # the agent's version before this one (by first call), if any
    previous_hit_rate: float | None

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_read / self.input_tokens if self.input_tokens else None

    @property
    def change(self) -> float | None:
        """This version's hit rate minus the previous version's (None when either is unknown)."""
        if self.cache_hit_rate is None or self.previous_hit_rate is None:
            return None
        return self.cache_hit_rate - self.previous_hit_rate


@dataclass
class CacheReport:
    start: date
    end: date  # exclusive
    days: list[CacheDay]
    total: CacheDay
    versions: list[PromptVersion]  # in use during the window, per agent, oldest first
    # versions that replaced an agent's earlier one, first called inside the window (marked on the time
    # axis); an agent's very first version changed nothing
    changes: list[PromptVersion]
    models_without_rates: list[str] = field(default_factory=list)  # left out of the miss cost


@lru_cache(maxsize=65_536)
def _cache_read_ratio(book: PriceBook, provider: str, model: str, day: date) -> Decimal | None:
    """Cache-read rate ÷ input rate on the day, or None when there are no rates. Kept per price book
    (PriceBook.current() is the same object while no price or discount changes): a year of days and
    models costs ~60 ms to look up, once."""
    found = book.rates(provider, model, datetime.combine(day, time(12), tzinfo=UTC), 0)
    if found is None:
        return None
    rates, _ = found
    if not rates["uncached_input"]:
        return None
    return rates["cache_read"] / rates["uncached_input"]


def cache_report(*, scope: Scope, start: date, end: date) -> CacheReport:
    """The window's caching per UTC day in [start, end) (zero-filled), in total, and per prompt version."""
    rows = (
        scoped(DailyRollup.objects.filter(day__gte=start, day__lt=end), scope)
        .values("day", "provider", "model")
        .annotate(**{f"sum_{name}": Coalesce(Sum(name), 0) for name in _TOKEN_SUMS})
        .annotate(**{f"sum_{name}": Coalesce(Sum(name), Decimal(0)) for name in _COST_SUMS})
        .order_by()
    )
    days = {day: CacheDay(day=day) for day in days_in_window(start=start, end=end)}
    book = PriceBook.current()
    without_rates: set[str] = set()
    for row in rows:
        part = CacheDay(
            day=row["day"],
            uncached_input=row["sum_uncached_input"],
            cache_read=row["sum_cache_read"],
            cache_write=row["sum_cache_write_5m"] + row["sum_cache_write_1h"],
            cost_uncached_input_usd=row["sum_cost_uncached_input_usd"],
            cost_cache_read_usd=row["sum_cost_cache_read_usd"],
            cost_cache_write_usd=row["sum_cost_cache_write_5m_usd"] + row["sum_cost_cache_write_1h_usd"],
        )
        if part.cost_uncached_input_usd:
            ratio = _cache_read_ratio(book, row["provider"], row["model"], row["day"])
            if ratio is None:
                without_rates.add(f"{row['provider']}/{row['model']}")
            else:
                part.miss_cost_usd = part.cost_uncached_input_usd * (1 - ratio)
        days[row["day"]].add(part)
    total = CacheDay(day=start)
    for day in days.values():
        total.add(day)
    versions = prompt_versions(scope=scope, start=start, end=end)
    window_start = datetime.combine(start, time(0), tzinfo=UTC)
    return CacheReport(
        start=start,
        end=end,
        days=list(days.values()),
        total=total,
        versions=versions,
        changes=[
            version
            for version in versions
            if version.previous is not None and version.introduced_at >= window_start
        ],
        models_without_rates=sorted(without_rates),
    )


def prompt_versions(*, scope: Scope, start: date, end: date) -> list[PromptVersion]:
    """The prompt versions called on the UTC days [start, end), each with its calls, first and last call
    and hit rate over the window (the per-day prompt-version rollup), and the agent's version before it
    (by first call ever) with that version's hit rate over all of its calls (it may not have been
    called in the window at all; the all-time prompt-version rollup). Two queries."""
    windowed = prompt_version_sums(scope=scope, start=start, end=end)
    in_window = {(row["agent_id"], row["prompt_version"]): row for row in windowed}
    if not in_window:
        return []
    history = scoped(
        PromptVersionRollup.objects.filter(agent_id__in={agent_id for agent_id, _ in in_window}), scope
    ).select_related("team", "agent")
    by_agent: dict[int, list[PromptVersionRollup]] = {}
    for row in sorted(history, key=lambda item: (item.first_call_at, item.prompt_version)):
        by_agent.setdefault(row.agent_id, []).append(row)
    versions = []
    for rows in by_agent.values():
        previous = None
        for row in rows:
            window = in_window.get((row.agent_id, row.prompt_version))
            if window is not None:
                versions.append(
                    PromptVersion(
                        team=row.team.slug,
                        agent=row.agent.name,
                        agent_id=row.agent_id,
                        prompt_version=row.prompt_version,
                        introduced_at=row.first_call_at,
                        first_call_at=window["first"],
                        last_call_at=window["last"],
                        calls=window["total_calls"],
                        cache_read=window["total_cache_read"],
                        input_tokens=window["total_input"],
                        previous=None if previous is None else previous.prompt_version,
                        previous_hit_rate=None
                        if previous is None or not previous.input_tokens
                        else previous.cache_read / previous.input_tokens,
                    )
                )
            previous = row
    return sorted(versions, key=lambda item: (item.team, item.agent, item.first_call_at))
