"""What alert rules read (finops.alerts.evaluate; the pages' reads are in selectors.py): call sums over windows from the rollups (never the calls table), task sums
from the per-task aggregates, running tasks, prompt versions and allowances. Every read takes many
windows or rules at once, grouped by team and agent, so one evaluation of any number of rules makes a
fixed, small number of queries.

A window [start, end) (minute-aligned) is read as its whole UTC days from the daily rollups and its
partial days at either edge from the minute rollup (`RecentRollup`), which holds what those edges can
reach (finops/ledger/rollups.py): so its sums equal those of the calls whose timestamp is in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet

from finops.accounts.models import Team
from finops.kpis.selectors import task_sums, tasks_ended
from finops.ledger.models import DailyRollup, PromptVersionRollup, RecentRollup, Task
from finops.ledger.tokens import TOKEN_TYPES

CALL_SUM_FIELDS: tuple[str, ...] = ("calls", "unpriced_calls", "calls_not_in_task", "cost_usd", *TOKEN_TYPES)
TASK_SUM_FIELDS: tuple[str, ...] = tuple(task_sums())

Range = tuple[datetime, datetime]
AgentKey = tuple[int, int]  # (team_id, agent_id)


def call_sums_empty() -> dict:
    return {name: Decimal(0) if name == "cost_usd" else 0 for name in CALL_SUM_FIELDS}


def task_sums_empty() -> dict:
    return {name: Decimal(0) if name == "cost_usd" else 0 for name in TASK_SUM_FIELDS}


def sums_add(total: dict, other: dict) -> dict:
    for name, value in other.items():
        total[name] += value
    return total


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def range_pieces(start: datetime, end: datetime) -> tuple[list[Range], tuple[date, date] | None]:
    """[start, end) as its partial-day edges (minute rollup) and its whole UTC days [first, last)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first_whole = (
        _midnight(start.date())
        if start == _midnight(start.date())
        else _midnight(start.date()) + timedelta(days=1)
    )
    last_whole = _midnight(end.date())
    if first_whole >= last_whole:
        return ([(start, end)] if start < end else []), None
    edges = [
        (edge_start, edge_end)
        for edge_start, edge_end in ((start, first_whole), (last_whole, end))
        if edge_start < edge_end
    ]
    return edges, (first_whole.date(), last_whole.date())


_sum_columns = ", ".join(f"sum(r.{name})" for name in CALL_SUM_FIELDS)
_RECENT_SQL = f"""
SELECT p.idx, r.team_id, r.agent_id, {_sum_columns}
FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS p (idx, piece_start, piece_end)
JOIN {RecentRollup._meta.db_table} AS r ON r.minute >= p.piece_start AND r.minute < p.piece_end
GROUP BY 1, 2, 3
"""
_DAILY_SQL = f"""
SELECT p.idx, r.team_id, r.agent_id, {_sum_columns}
FROM unnest(%s::int4[], %s::date[], %s::date[]) AS p (idx, first_day, last_day)
JOIN {DailyRollup._meta.db_table} AS r ON r.day >= p.first_day AND r.day < p.last_day
GROUP BY 1, 2, 3
"""


def call_sums_by_agent(*, ranges: list[Range]) -> list[dict[AgentKey, dict]]:
    """For each range, the sums of the calls in it per (team_id, agent_id): two queries however many
    ranges (one over the minute rollup, one over the daily rollup)."""
    # a piece shared by several ranges (today so far is in the 1d, 7d and month windows) is read once
    minute_pieces: dict[Range, list[int]] = defaultdict(list)
    day_pieces: dict[tuple[date, date], list[int]] = defaultdict(list)
    for index, (start, end) in enumerate(ranges):
        edges, days = range_pieces(start, end)
        for edge in edges:
            minute_pieces[edge].append(index)
        if days:
            day_pieces[days].append(index)
    results: list[dict[AgentKey, dict]] = [defaultdict(call_sums_empty) for _ in ranges]
    with connection.cursor() as cursor:
        for sql, pieces in ((_RECENT_SQL, minute_pieces), (_DAILY_SQL, day_pieces)):
            if not pieces:
                continue
            keys = list(pieces)
            cursor.execute(sql, [list(range(len(keys))), [key[0] for key in keys], [key[1] for key in keys]])
            for piece, team_id, agent_id, *values in cursor.fetchall():
                sums = dict(zip(CALL_SUM_FIELDS, values, strict=True))
                for index in pieces[keys[piece]]:
                    sums_add(results[index][team_id, agent_id], sums)
    return results


def task_sums_by_agent(*, ranges: list[Range], team_ids: list[int] | None) -> list[dict[AgentKey, dict]]:
    """For each range, the KPI sums of the tasks that ended in it per (team_id, agent_id) (the same sums
    as finops.kpis.selectors.task_totals): one query per range. Every team (None) is named team by
    team all the same: the (team, ended_at) index then reads only the range, not every task."""
    if team_ids is None:
        team_ids = list(Team.objects.values_list("id", flat=True))
    results = []
    for start, end in ranges:
        tasks = tasks_ended(start=start, end=end).filter(team_id__in=team_ids)
        rows = tasks.values("team_id", "agent_id").annotate(**task_sums()).order_by()
        results.append(
            {(row["team_id"], row["agent_id"]): {name: row[name] for name in TASK_SUM_FIELDS} for row in rows}
        )
    return results


@dataclass(frozen=True)
class RunningTask:
    team_id: int
    agent_id: int
    task_id: str
    steps: int
    cost_usd: Decimal
    unpriced_calls: int
    last_call_at: datetime
    pk: int | None = None  # the task row's, for a link to its trace


def running_tasks(
    *,
    active_since: datetime,
    over_cost_usd: Decimal | None,
    over_steps: int | None,
    tasks: QuerySet[Task] | None = None,
) -> list[RunningTask]:
    """Tasks with no outcome yet whose last call is at or after `active_since`, past either bound (one
    query, on the partial index of tasks without an outcome). `tasks`: a restricted queryset to read
    from (a page's, through Task.objects.restrict); the evaluator reads every team's."""
    from django.db.models import Q

    past = Q(pk__in=[])
    if over_cost_usd is not None:
        past |= Q(cost_usd__gt=over_cost_usd)
    if over_steps is not None:
        past |= Q(steps__gt=over_steps)
    tasks = Task.objects.all() if tasks is None else tasks
    rows = tasks.filter(past, status__isnull=True, last_call_at__gte=active_since).values_list(
        "team_id", "agent_id", "task_id", "steps", "cost_usd", "unpriced_calls", "last_call_at", "pk"
    )
    return [RunningTask(*row) for row in rows]


def prompt_versions_in_use(*, used_since: datetime) -> dict[int, list[PromptVersionRollup]]:
    """Per agent that called a prompt version at or after `used_since`: all of its versions, newest
    first (by first call). One query."""
    in_use = PromptVersionRollup.objects.filter(last_call_at__gte=used_since).values("agent_id")
    versions: dict[int, list[PromptVersionRollup]] = defaultdict(list)
    for version in PromptVersionRollup.objects.filter(agent_id__in=in_use).order_by(
        "agent_id", "-first_call_at", "prompt_version"
    ):
        versions[version.agent_id].append(version)
    return versions
