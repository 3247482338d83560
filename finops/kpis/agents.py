"""One agent over a window (issue 9, "Agent page"): $/successful task per day against its cost SLO,
outcomes, how many steps its runs take against the ideal, and what a run costs (p50, p95). Read from
the task aggregates the writer keeps (ledger_task), never from the calls."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Aggregate, Count, DecimalField, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from finops.ledger.models import MONEY, Agent, Task, TaskStatus


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
    per_day = (
        ended.annotate(day=TruncDate("ended_at"))
        .values("day")
        .annotate(
            tasks=Count("id"),
            successful=Count("id", filter=Q(status=TaskStatus.SUCCESS)),
            cost=Coalesce(Sum("cost_usd"), Decimal(0)),
        )
        .order_by("day")
    )
    days = [
        DayCostPerSuccess(
            day=row["day"], tasks=row["tasks"], successful=row["successful"], cost_usd=row["cost"]
        )
        for row in per_day
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
