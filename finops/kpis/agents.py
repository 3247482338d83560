"""One agent over a window (issue 9, "Agent page"): $/successful task per day against its cost SLO,
outcomes, how many steps its runs take against the ideal, and what a run costs (p50, p95). Read from
the per-day task rollups and the task aggregates (ledger_task), never from the calls."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Aggregate, Count, DecimalField, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from finops.kpis.selectors import whole_days, window_edges
from finops.ledger.models import MONEY, Agent, Task, TaskDailyRollup, TaskStatus


class Percentile(Aggregate):
    """PostgreSQL's percentile_disc: the first value at or past the fraction of the ordered set, so an
    exact numeric cost of a real run (percentile_cont would interpolate in floating point)."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DecimalField(**MONEY)

    def __init__(self, expression, *, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class DayCostPerSuccess:
    day: date
    tasks: int
    successful: int
    cost_usd: Decimal

    @property
    def cost_per_successful_task_usd(self) -> Decimal | None:
        return self.cost_usd / self.successful if self.successful else None


@dataclass(frozen=True)
class AgentReport:
    days: list[DayCostPerSuccess]
    steps: dict[int, int]  # steps per run → runs that took that many (ended runs)
    cost_p50_usd: Decimal | None
    cost_p95_usd: Decimal | None
    priced_runs: int  # runs in the percentiles: ended, and every call priced


def agent_report(*, agent: Agent, start: datetime, end: datetime) -> AgentReport:
    """The caller has restricted `agent`. Days are UTC days of the runs' end."""
    ended = Task.objects.filter(agent=agent, ended_at__gte=start, ended_at__lt=end, status__isnull=False)
    # whole days from the per-day task rollups, the window's ragged edges from the tasks
    first_day, last_day = whole_days(start, end)
    sums: dict[date, list] = {
        day: [tasks, successful, cost]
        for day, tasks, successful, cost in TaskDailyRollup.objects.filter(
            agent=agent, day__gte=first_day, day__lt=last_day
        ).values_list("day", "ended", "successful", "cost_usd")
    }
    for edge_start, edge_end in window_edges(start, end):
        edge = ended.filter(ended_at__gte=edge_start, ended_at__lt=edge_end)
        for row in (
            edge.annotate(day=TruncDate("ended_at"))
            .values("day")
            .annotate(
                tasks=Count("id"),
                successful=Count("id", filter=Q(status=TaskStatus.SUCCESS)),
                cost=Coalesce(Sum("cost_usd"), Decimal(0)),
            )
        ):
            day_sums = sums.setdefault(row["day"], [0, 0, Decimal(0)])
            day_sums[0] += row["tasks"]
            day_sums[1] += row["successful"]
            day_sums[2] += row["cost"]
    days = [
        DayCostPerSuccess(day=day, tasks=tasks, successful=successful, cost_usd=cost)
        for day, (tasks, successful, cost) in sorted(sums.items())
        if tasks  # a day all of whose runs were changed to end elsewhere keeps a row of zeros
    ]
    steps = Counter(dict(ended.values("steps").annotate(runs=Count("id")).values_list("steps", "runs")))
    # a run with an unpriced call has no known cost: it would pull the percentiles down as if cheap
    priced = ended.filter(unpriced_calls=0).aggregate(
        p50=Percentile("cost_usd", fraction=0.5), p95=Percentile("cost_usd", fraction=0.95), runs=Count("id")
    )
    return AgentReport(
        days=days,
        steps=dict(sorted(steps.items())),
        cost_p50_usd=priced["p50"],
        cost_p95_usd=priced["p95"],
        priced_runs=priced["runs"],
    )
