"""`finops gate`: fail a release pipeline when an agent's $/successful task is over budget.

The number comes from `kpis_for_scope`, the one reader behind the API and the dashboard, so the gate and
the charts can never disagree.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from finops.kpis.selectors import Scope, kpis_for_scope
from finops.ledger.models import Agent

OVER_BUDGET_EXIT_CODE = 1
USAGE_ERROR_EXIT_CODE = 2
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MICRO = Decimal("0.000001")


def duration(value: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration; use e.g. 30m, 12h, 1d, 2w")
    return timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})


def non_negative_decimal(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number ≥ 0")
    return number


def usd(amount: Decimal) -> str:
    return f"${amount.quantize(MICRO, ROUND_HALF_EVEN)}"


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    over_budget: bool
    limit_usd: Decimal  # budget × (1 + tolerance): the highest cost that still passes


def budget_verdict(*, cost_per_task_usd: Decimal, budget_usd: Decimal, tolerance: Decimal) -> BudgetVerdict:
    """Over budget only when the cost exceeds the budget by more than the tolerance (exact decimals)."""
    limit = budget_usd * (1 + tolerance)
    return BudgetVerdict(over_budget=cost_per_task_usd > limit, limit_usd=limit)


def agent_resolve(*, name: str, team_slug: str | None) -> Agent:
    agents = Agent.objects.select_related("team").filter(name=name)
    if team_slug:
        agents = agents.filter(team__slug=team_slug)
    found = list(agents.order_by("team__slug"))
    where = f" in team {team_slug!r}" if team_slug else ""
    if not found:
        raise CommandError(
            f"no agent named {name!r}{where}; agents appear with their first event (check the name and --team)",
            returncode=USAGE_ERROR_EXIT_CODE,
        )
    if len(found) > 1:
        teams = ", ".join(agent.team.slug for agent in found)
        raise CommandError(
            f"agent {name!r} exists in several teams ({teams}); pick one with --team",
            returncode=USAGE_ERROR_EXIT_CODE,
        )
    return found[0]


class Command(BaseCommand):
    help = (
        "For release pipelines: compare an agent's $ per successful task over the last --since (tasks that "
        "ended in [now - since, now), with all their calls) with --budget-per-task. Exit codes: 0 within "
        "budget × (1 + tolerance), or no successful task in the window (nothing to judge; add "
        "--require-successful-tasks to fail instead); 1 over budget by more than the tolerance, or cost "
        "unknown (every call of the successful tasks unpriced); 2 usage "
        "error (unknown or ambiguous agent, bad arguments)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--agent", required=True, help="agent name, as sent in events")
        parser.add_argument("--team", help="team slug; needed when several teams have an agent of that name")
        parser.add_argument(
            "--since", type=duration, default=timedelta(days=1), help="window: 30m, 12h, 1d (default), 2w"
        )
        parser.add_argument(
            "--budget-per-task", type=non_negative_decimal, required=True, metavar="USD", help="e.g. 0.30"
        )
        parser.add_argument(
            "--tolerance",
            type=non_negative_decimal,
            default=Decimal("0.2"),
            help="allowed overshoot as a fraction of the budget (default 0.2: fail above budget × 1.2)",
        )
        parser.add_argument(
            "--require-successful-tasks",
            action="store_true",
            help="exit 1 when no successful task ended in the window (default: exit 0, nothing to judge)",
        )

    def handle(self, *args, **options) -> None:
        agent = agent_resolve(name=options["agent"], team_slug=options["team"])
        end = datetime.now(UTC)
        start = end - options["since"]
        kpis = kpis_for_scope(
            scope=Scope(team_ids=frozenset({agent.team_id}), agent_ids=frozenset({agent.pk})),
            start=start,
            end=end,
        )
        budget: Decimal = options["budget_per_task"]
        tolerance: Decimal = options["tolerance"]
        self.stdout.write(
            f"agent {agent.team.slug}/{agent.name}, tasks ended {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"
        )
        self.stdout.write(
            f"tasks: {kpis.tasks_ended} ended, {kpis.tasks_successful} successful, {kpis.tasks_failed} failed, "
            f"{kpis.tasks_abandoned} abandoned, {kpis.tasks_killed} killed; cost of all their calls "
            f"{usd(kpis.tasks_cost_usd)}"
        )
        if kpis.cost_per_successful_task_usd is None and kpis.tasks_successful:
            # an unknown cost is not a cost within budget: every call of these tasks is unpriced
            self.stdout.write(
                f"FAIL: cost unknown — all {kpis.tasks_unpriced_calls} calls of these tasks are unpriced; "
                "add their model's price in the admin (Pricing › Model price overrides)"
            )
            raise SystemExit(OVER_BUDGET_EXIT_CODE)
        if kpis.tasks_unpriced_calls:
            self.stdout.write(
                f"warning: {kpis.tasks_unpriced_calls} calls of these tasks are unpriced, so the cost is "
                "understated; add their model's price in the admin (Pricing › Model price overrides)"
            )
        if kpis.cost_per_successful_task_usd is None:
            self.stdout.write("no successful task ended in the window: nothing to judge")
            if options["require_successful_tasks"]:
                self.stdout.write("FAIL: --require-successful-tasks was given")
                raise SystemExit(OVER_BUDGET_EXIT_CODE)
            self.stdout.write("PASS (no data)")
            return
        cost = kpis.cost_per_successful_task_usd
        verdict = budget_verdict(cost_per_task_usd=cost, budget_usd=budget, tolerance=tolerance)
        self.stdout.write(
            f"$/successful task: {usd(cost)}  budget: {usd(budget)}  "
            f"limit with {format((tolerance * 100).normalize(), 'f')}% tolerance: {usd(verdict.limit_usd)}"
        )
        if verdict.over_budget:
            self.stdout.write(
                f"FAIL: {usd(cost)} per successful task is over the limit of {usd(verdict.limit_usd)}"
            )
            raise SystemExit(OVER_BUDGET_EXIT_CODE)
        self.stdout.write(
            f"PASS: {usd(cost)} per successful task is within the limit of {usd(verdict.limit_usd)}"
        )
