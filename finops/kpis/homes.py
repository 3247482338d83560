"""Reads behind the role homes (issue 9, "Home per role"): each a grouped read of the daily rollups or
the per-task aggregates (never a scan of the calls), over a scope
already restricted to the principal's teams (finops.kpis.series.scope_for_principal, the Home view).

The formulas are the KPI selectors' own: $/successful task is `_cost_per_successful_task` over the
sums of `task_sums`, a cache hit rate is cache read over the four input token types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Max, Min, Sum
from django.db.models.functions import Coalesce

from finops.kpis.selectors import Scope, _cost_per_successful_task, scoped, task_sums, tasks_ended
from finops.ledger.models import Agent, DailyRollup, PromptVersionDailyRollup
from finops.ledger.tokens import TOKEN_TYPES


def _rollups(*, scope: Scope, start: date, end: date):
    return scoped(DailyRollup.objects.filter(day__gte=start, day__lt=end), scope)


@dataclass(frozen=True)
class SpendRow:
    team_id: int
    provider: str
    cost_usd: Decimal
    calls: int
    unpriced_calls: int


def spend_by_team_and_provider(*, scope: Scope, start: date, end: date) -> list[SpendRow]:
    """Priced spend per team and provider over the UTC days [start, end): one grouped read."""
    rows = (
        _rollups(scope=scope, start=start, end=end)
        .values("team_id", "provider")
        .annotate(
            total_cost=Coalesce(Sum("cost_usd"), Decimal(0)),
            total_calls=Coalesce(Sum("calls"), 0),
            total_unpriced=Coalesce(Sum("unpriced_calls"), 0),
        )
        .order_by("team_id", "-total_cost", "provider")
    )
    return [
        SpendRow(
            row["team_id"], row["provider"], row["total_cost"], row["total_calls"], row["total_unpriced"]
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ModelRow:
    provider: str
    model: str
    cost_usd: Decimal
    calls: int
    unpriced_calls: int
    tokens: int


def spend_by_model(*, scope: Scope, start: date, end: date) -> list[ModelRow]:
    """Per provider and model over the UTC days [start, end), costliest first (then most calls, so
    unpriced models, whose cost is unknown, still rank by use)."""
    all_tokens = sum((Sum(token_type) for token_type in TOKEN_TYPES[1:]), Sum(TOKEN_TYPES[0]))
    rows = (
        _rollups(scope=scope, start=start, end=end)
        .values("provider", "model")
        .annotate(
            total_cost=Coalesce(Sum("cost_usd"), Decimal(0)),
            total_calls=Coalesce(Sum("calls"), 0),
            total_unpriced=Coalesce(Sum("unpriced_calls"), 0),
            total_tokens=Coalesce(all_tokens, 0),
        )
        .order_by("-total_cost", "-total_calls", "provider", "model")
    )
    return [
        ModelRow(
            row["provider"],
            row["model"],
            row["total_cost"],
            row["total_calls"],
            row["total_unpriced"],
            row["total_tokens"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class UnpricedRow:
    team_id: int
    agent_id: int
    provider: str
    model: str
    unpriced_calls: int
    last_day: date


def unpriced_calls_by_model(*, scope: Scope, start: date, end: date) -> list[UnpricedRow]:
    """The calls with no known price (SPEC: flagged, never $0) per team, agent and model: what needs a
    price added."""
    rows = (
        _rollups(scope=scope, start=start, end=end)
        .filter(unpriced_calls__gt=0)
        .values("team_id", "agent_id", "provider", "model")
        .annotate(total_unpriced=Sum("unpriced_calls"), last_day=Max("day"))
        .order_by("-total_unpriced", "team_id", "agent_id", "provider", "model")
    )
    return [
        UnpricedRow(
            row["team_id"],
            row["agent_id"],
            row["provider"],
            row["model"],
            row["total_unpriced"],
            row["last_day"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class AgentSlo:
    agent: Agent
    tasks_ended: int
    successful: int
    cost_usd: Decimal
    unpriced_calls: int
    cost_per_successful_task_usd: Decimal | None

    @property
    def over_slo(self) -> bool | None:
        """True over its cost SLO, False within it, None without an SLO or a figure to compare."""
        if self.agent.cost_slo_usd is None or self.cost_per_successful_task_usd is None:
            return None
        return self.cost_per_successful_task_usd > self.agent.cost_slo_usd


def agents_against_cost_slo(*, scope: Scope, start: datetime, end: datetime) -> list[AgentSlo]:
    """Every agent of the scope with its $/successful task over the tasks that ended in [start, end)
    (SPEC's task KPIs): two reads, the agents and their task sums grouped by agent."""
    sums = task_sums()
    grouped = {
        row["agent_id"]: {key: row[f"total_{key}"] for key in sums}
        for row in scoped(tasks_ended(start=start, end=end), scope)
        .values("agent_id")
        .annotate(**{f"total_{key}": expression for key, expression in sums.items()})
        .order_by()
    }
    empty = {"ended": 0, "successful": 0, "cost_usd": Decimal(0), "unpriced_calls": 0}
    report = []
    for agent in scoped(Agent.objects.select_related("team"), scope):
        tasks = grouped.get(agent.pk, empty)
        report.append(
            AgentSlo(
                agent=agent,
                tasks_ended=tasks["ended"],
                successful=tasks["successful"],
                cost_usd=tasks["cost_usd"],
                unpriced_calls=tasks["unpriced_calls"],
                cost_per_successful_task_usd=_cost_per_successful_task(tasks),
            )
        )
    return report


@dataclass(frozen=True)
class PromptVersionRow:
    agent_id: int
    prompt_version: str
    first_call_at: datetime
    last_call_at: datetime
    calls: int
    cache_read: int
    input_tokens: int
    cost_usd: Decimal
    unpriced_calls: int
    calls_in_tasks: int
    unpriced_calls_in_tasks: int
    cost_in_tasks_usd: Decimal

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_read / self.input_tokens if self.input_tokens else None

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        """Priced spend over the priced calls (None without one: an unknown price is never $0)."""
        priced = self.calls - self.unpriced_calls
        return self.cost_usd / priced if priced else None

    @property
    def known_cost_in_tasks_usd(self) -> Decimal | None:
        """The priced spend in tasks, None (unknown, never $0) when every call in tasks is unpriced."""
        unknown = self.calls_in_tasks and self.unpriced_calls_in_tasks == self.calls_in_tasks
        return None if unknown else self.cost_in_tasks_usd


def prompt_version_sums(*, scope: Scope, start: date, end: date):
    """Per agent and prompt version called on the UTC days [start, end): its first and last call there
    and the sums of the per-day prompt-version rollup (values, unordered: one grouped read)."""
    return (
        scoped(PromptVersionDailyRollup.objects.filter(day__gte=start, day__lt=end), scope)
        .values("agent_id", "prompt_version")
        .annotate(
            first=Min("first_call_at"),
            last=Max("last_call_at"),
            total_calls=Sum("calls"),
            total_cache_read=Sum("cache_read"),
            total_input=Sum("input_tokens"),
            total_cost=Sum("cost_usd"),
            total_unpriced=Sum("unpriced_calls"),
            total_in_tasks=Sum("calls_in_tasks"),
            total_unpriced_in_tasks=Sum("unpriced_calls_in_tasks"),
            total_cost_in_tasks=Sum("cost_in_tasks_usd"),
        )
        .order_by()
    )


def prompt_versions_report(*, scope: Scope, start: date, end: date) -> list[PromptVersionRow]:
    """Per agent and prompt version, over its calls on the UTC days [start, end): calls, cache hit
    rate, priced cost ($ per priced call) and the calls in tasks with their cost. One grouped read of
    the per-day prompt-version rollup; tasks are not counted (a rollup cannot count them distinctly)."""
    rows = prompt_version_sums(scope=scope, start=start, end=end).order_by(
        "agent_id", "-first", "prompt_version"
    )
    return [
        PromptVersionRow(
            row["agent_id"],
            row["prompt_version"],
            row["first"],
            row["last"],
            row["total_calls"],
            row["total_cache_read"],
            row["total_input"],
            row["total_cost"],
            row["total_unpriced"],
            row["total_in_tasks"],
            row["total_unpriced_in_tasks"],
            row["total_cost_in_tasks"],
        )
        for row in rows
    ]
