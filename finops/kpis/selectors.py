"""The four agent KPIs (SPEC.md). One reader per number: the API, the dashboard, alerts and `finops gate`
all call `kpis_for_scope`, so they can never disagree.

Call-level figures (spend, calls, tokens, cache hit rate) come from the daily rollups for whole UTC days
inside the window and from the calls themselves for the partial days at its edges. Task figures (of
the tasks that ended in the window) likewise: whole days from the per-day task rollups, the edges from
the per-task aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce

from finops.ledger.models import Agent, Call, DailyRollup, Task, TaskDailyRollup, TaskStatus
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES


@dataclass(frozen=True)
class Scope:
    """Which calls and tasks: team_ids None means every team the caller may see (already restricted)."""

    team_ids: frozenset[int] | None
    agent_ids: frozenset[int] | None = None


@dataclass
class Kpis:
    start: datetime
    end: datetime
    cost_usd: Decimal = Decimal(0)
    calls: int = 0
    unpriced_calls: int = 0
    calls_not_in_task: int = 0
    cost_not_in_task_usd: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_TYPES, 0))
    tasks_ended: int = 0
    tasks_successful: int = 0
    tasks_failed: int = 0
    tasks_abandoned: int = 0
    tasks_killed: int = 0  # stopped by their agent's kill switch
    tasks_cost_usd: Decimal = Decimal(0)
    tasks_unpriced_calls: int = 0  # calls of those tasks whose cost is unknown, so not in tasks_cost_usd
    cost_per_successful_task_usd: Decimal | None = None
    cache_hit_rate: float | None = None
    token_efficiency_index: float | None = None
    step_inflation_ratio: float | None = None


def month_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def scoped(queryset, scope: Scope):
    """Filter a queryset of team- and agent-owned rows to a scope."""
    if scope.team_ids is not None:
        queryset = queryset.filter(team_id__in=scope.team_ids)
    if scope.agent_ids is not None:
        queryset = queryset.filter(agent_id__in=scope.agent_ids)
    return queryset


def whole_days(start: datetime, end: datetime) -> tuple[date, date]:
    """[first, last) whole UTC days inside [start, end)."""
    first = start.date()
    if start.timetz() != time(0, tzinfo=UTC) and first < date.max:  # date.max + 1 day would overflow
        first += timedelta(days=1)
    last = end.date()
    return first, max(first, last)


def window_edges(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) outside its whole UTC days (whole_days), read from the rows."""
    first_day, last_day = whole_days(start, end)
    if first_day >= last_day:  # no whole day inside: the window is all edge
        return [(start, end)]
    first_whole = datetime.combine(first_day, time(0), tzinfo=UTC)
    last_whole = datetime.combine(last_day, time(0), tzinfo=UTC)
    return [
        (edge_start, edge_end)
        for edge_start, edge_end in ((start, first_whole), (last_whole, end))
        if edge_start < edge_end
    ]


_CALL_SUMS = {
    "calls": Count("id"),
    "unpriced_calls": Count("id", filter=Q(cost_usd__isnull=True)),
    "calls_not_in_task": Count("id", filter=Q(task_id__isnull=True)),
    "cost_usd": Coalesce(Sum("cost_usd"), Decimal(0)),
    "cost_not_in_task_usd": Coalesce(Sum("cost_usd", filter=Q(task_id__isnull=True)), Decimal(0)),
    **{token_type: Coalesce(Sum(token_type), 0) for token_type in TOKEN_TYPES},
}
_ROLLUP_SUMS = {
    "calls": Coalesce(Sum("calls"), 0),
    "unpriced_calls": Coalesce(Sum("unpriced_calls"), 0),
    "calls_not_in_task": Coalesce(Sum("calls_not_in_task"), 0),
    "cost_usd": Coalesce(Sum("cost_usd"), Decimal(0)),
    "cost_not_in_task_usd": Coalesce(Sum("cost_not_in_task_usd"), Decimal(0)),
    **{token_type: Coalesce(Sum(token_type), 0) for token_type in TOKEN_TYPES},
}


def _aggregate(queryset, sums: dict) -> dict:
    # aliases must differ from field names ("cost_usd" is both), hence the prefix
    row = queryset.aggregate(**{f"total_{key}": expression for key, expression in sums.items()})
    return {key: row[f"total_{key}"] for key in sums}


def call_totals(*, scope: Scope, start: datetime, end: datetime) -> dict:
    """Sums over the calls whose timestamp is in [start, end)."""
    first_day, last_day = whole_days(start, end)
    totals = _aggregate(
        scoped(DailyRollup.objects.filter(day__gte=first_day, day__lt=last_day), scope), _ROLLUP_SUMS
    )
    for edge_start, edge_end in window_edges(start, end):
        partial = scoped(Call.objects.filter(timestamp__gte=edge_start, timestamp__lt=edge_end), scope)
        for key, value in _aggregate(partial, _CALL_SUMS).items():
            totals[key] += value
    return totals


def task_sums() -> dict:
    """The sums task_totals takes over tasks (a queryset of Task), named: the alert evaluator groups the
    same sums by team and agent, so its task KPIs are these."""
    total_tokens = sum((F(token_type) for token_type in TOKEN_TYPES[1:]), F(TOKEN_TYPES[0]))
    success = Q(status=TaskStatus.SUCCESS)
    known_ideal = Q(ideal_steps__isnull=False) | Q(agent__ideal_steps__isnull=False)
    return {
        "ended": Count("id"),
        "successful": Count("id", filter=success),
        "failed": Count("id", filter=Q(status=TaskStatus.FAILURE)),
        "abandoned": Count("id", filter=Q(status=TaskStatus.ABANDONED)),
        "killed": Count("id", filter=Q(status=TaskStatus.KILLED)),
        "cost_usd": Coalesce(Sum("cost_usd"), Decimal(0)),
        "unpriced_calls": Coalesce(Sum("unpriced_calls"), 0),
        "useful_output": Coalesce(Sum("output", filter=success), 0),
        "all_tokens": Coalesce(Sum(total_tokens), 0),
        "actual_steps": Coalesce(Sum("steps", filter=known_ideal), 0),
        "ideal_steps": Coalesce(Sum(Coalesce("ideal_steps", "agent__ideal_steps"), filter=known_ideal), 0),
    }


def tasks_ended(*, start: datetime, end: datetime):
    """The tasks that ended in [start, end), with an outcome."""
    return Task.objects.filter(ended_at__gte=start, ended_at__lt=end, status__isnull=False)


def _task_rollup_sums() -> dict:
    """task_sums() over TaskDailyRollup rows: the tasks that fall back on their agent's ideal steps
    take its value now, as task_sums() does over the tasks."""
    agent_ideal_known = Q(agent__ideal_steps__isnull=False)
    return {
        **{
            name: Coalesce(Sum(name), 0)
            for name in ("ended", "successful", "failed", "abandoned", "killed", "unpriced_calls")
        },
        "cost_usd": Coalesce(Sum("cost_usd"), Decimal(0)),
        "useful_output": Coalesce(Sum("useful_output"), 0),
        "all_tokens": Coalesce(Sum("all_tokens"), 0),
        "actual_steps": Coalesce(Sum("steps_ideal_known"), 0)
        + Coalesce(Sum("steps_agent_ideal", filter=agent_ideal_known), 0),
        "ideal_steps": Coalesce(Sum("ideal_steps"), 0)
        + Coalesce(Sum(F("tasks_agent_ideal") * F("agent__ideal_steps"), filter=agent_ideal_known), 0),
    }


def task_totals(*, scope: Scope, start: datetime, end: datetime) -> dict:
    """Sums over the tasks that ended in [start, end), with all of their calls: the whole UTC days
    inside the window from the per-day task rollups, the partial days at its edges from the tasks."""
    first_day, last_day = whole_days(start, end)
    totals = _aggregate(
        scoped(TaskDailyRollup.objects.filter(day__gte=first_day, day__lt=last_day), scope),
        _task_rollup_sums(),
    )
    for edge_start, edge_end in window_edges(start, end):
        partial = scoped(tasks_ended(start=edge_start, end=edge_end), scope)
        for key, value in _aggregate(partial, task_sums()).items():
            totals[key] += value
    return totals


def _cost_per_successful_task(tasks: dict) -> Decimal | None:
    """Null without a successful task, and null when no call of the tasks has a known price: an
    unknown cost is never shown as $0. Partly unpriced tasks count their priced calls, and the
    unpriced ones are reported beside (tasks_unpriced_calls)."""
    if not tasks["successful"]:
        return None
    if tasks["unpriced_calls"] and not tasks["cost_usd"]:
        return None
    return tasks["cost_usd"] / tasks["successful"]


def kpis_for_scope(*, scope: Scope, start: datetime, end: datetime) -> Kpis:
    return kpis_from_totals(
        start=start,
        end=end,
        calls=call_totals(scope=scope, start=start, end=end),
        tasks=task_totals(scope=scope, start=start, end=end),
    )


def kpis_from_totals(*, start: datetime, end: datetime, calls: dict, tasks: dict) -> Kpis:
    """The KPIs from the sums of call_totals and task_totals (or the same sums read another way, as
    the alert evaluator reads them from the minute rollups): the one place their formulas live."""
    total_input = sum(calls[token_type] for token_type in INPUT_TOKEN_TYPES)
    return Kpis(
        start=start,
        end=end,
        cost_usd=calls["cost_usd"],
        calls=calls["calls"],
        unpriced_calls=calls["unpriced_calls"],
        calls_not_in_task=calls["calls_not_in_task"],
        cost_not_in_task_usd=calls.get("cost_not_in_task_usd", Decimal(0)),
        tokens={token_type: calls[token_type] for token_type in TOKEN_TYPES},
        tasks_ended=tasks["ended"],
        tasks_successful=tasks["successful"],
        tasks_failed=tasks["failed"],
        tasks_abandoned=tasks["abandoned"],
        tasks_killed=tasks["killed"],
        tasks_cost_usd=tasks["cost_usd"],
        tasks_unpriced_calls=tasks["unpriced_calls"],
        cost_per_successful_task_usd=_cost_per_successful_task(tasks),
        cache_hit_rate=calls["cache_read"] / total_input if total_input else None,
        token_efficiency_index=(
            tasks["useful_output"] / tasks["all_tokens"] if tasks["all_tokens"] else None
        ),
        step_inflation_ratio=(tasks["actual_steps"] / tasks["ideal_steps"] if tasks["ideal_steps"] else None),
    )


def agents_in_scope(*, scope: Scope) -> list[Agent]:
    return list(scoped(Agent.objects.select_related("team"), Scope(scope.team_ids)))


def tasks_most_expensive(*, scope: Scope, start: datetime, end: datetime, limit: int = 10) -> list[Task]:
    """The costliest runs with a call in [start, end), for the lists that link to a task's trace.

    Ended runs and running ones are read apart, each by an index of its own (ended: by cost,
    task_ended_cost_idx, stopping at the first `limit` in the window; running: by last call,
    task_running_idx), then merged: one query over both would read every task of the window."""
    tasks = scoped(Task.objects.select_related("team", "agent"), scope).filter(
        last_call_at__gte=start, first_call_at__lt=end
    )
    ended = tasks.filter(status__isnull=False).order_by("-cost_usd", "id")[:limit]
    running = tasks.filter(status__isnull=True).order_by("-cost_usd", "id")[:limit]
    return sorted([*ended, *running], key=lambda task: (-task.cost_usd, task.id))[:limit]
