"""Time series for the dashboards, read from the daily rollups (never a scan of raw calls).

Series are per UTC day over [start, end) with end exclusive, zero-filled so a quiet day shows as a
gap rather than vanishing. Totals and KPIs are not computed here: they come from `kpis_for_scope`
(one reader per number); these selectors only say how a window's spend and tokens spread over days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from django.http import Http404

from finops.accounts.models import Team
from finops.accounts.selectors import Principal, visible_team_ids
from finops.kpis.selectors import Kpis, Scope, scoped
from finops.ledger.models import Agent, DailyRollup
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES

StackBy = Literal["team", "agent", "model", "token_type"]
STACK_BY_CHOICES: tuple[StackBy, ...] = ("team", "agent", "model", "token_type")


@dataclass(frozen=True)
class ResolvedScope:
    """A scope a principal may read, with the team and agents it names (for labels and targets)."""

    scope: Scope
    team: Team | None
    agents: tuple[Agent, ...]

    @property
    def single_agent(self) -> Agent | None:
        return self.agents[0] if len(self.agents) == 1 else None


def scope_for_principal(
    *, principal: Principal, team_slug: str | None, agent_name: str | None
) -> ResolvedScope:
    """The scope a user or token may read. Raises Http404 (never another team's numbers) for a team
    outside its reach or an agent it cannot see. Without a team, an agent name matches that agent in
    every team the principal sees (agent names are only unique per team)."""
    teams = Team.objects.restrict(principal)
    team = None
    if team_slug:
        team = teams.filter(slug=team_slug).first()
        if team is None:
            raise Http404("no such team")
        team_ids: frozenset[int] | None = frozenset({team.pk})
    else:
        visible = visible_team_ids(principal=principal)
        team_ids = None if visible is None else frozenset(visible)
    if not agent_name:
        return ResolvedScope(scope=Scope(team_ids=team_ids), team=team, agents=())
    agents = Agent.objects.select_related("team").filter(name=agent_name)
    if team_ids is not None:  # restricted above (Team.objects.restrict, visible_team_ids)
        agents = agents.filter(team_id__in=team_ids)
    found = tuple(agents)
    if not found:
        raise Http404("no such agent")
    return ResolvedScope(
        scope=Scope(team_ids=team_ids, agent_ids=frozenset(agent.pk for agent in found)),
        team=team,
        agents=found,
    )


def _scoped_rollups(*, scope: Scope, start: date, end: date):
    return scoped(DailyRollup.objects.filter(day__gte=start, day__lt=end), scope)


def days_in_window(*, start: date, end: date) -> list[date]:
    return [start + timedelta(days=offset) for offset in range((end - start).days)]


@dataclass(frozen=True)
class SpendSeries:
    """Spend per day, one list per stack (aligned with `days`). Stacks are ordered by total, largest first."""

    days: list[date]
    stacks: dict[str, list[Decimal]]
    stack_by: StackBy

    def stack_total(self, label: str) -> Decimal:
        return sum(self.stacks[label], Decimal(0))

    def day_totals(self) -> list[Decimal]:
        return [
            sum((stack[position] for stack in self.stacks.values()), Decimal(0))
            for position in range(len(self.days))
        ]

    def total(self) -> Decimal:
        return sum(self.day_totals(), Decimal(0))


def spend_by_day(*, scope: Scope, start: date, end: date, stack_by: StackBy) -> SpendSeries:
    """Priced spend per UTC day in [start, end), split by team, agent, model or token type.

    Unpriced calls add nothing here (their cost is unknown, not zero); count them with `usage_by_day`.
    """
    if stack_by not in STACK_BY_CHOICES:
        raise ValueError(f"stack_by must be one of {', '.join(STACK_BY_CHOICES)}")
    days = days_in_window(start=start, end=end)
    index = {day: position for position, day in enumerate(days)}
    rollups = _scoped_rollups(scope=scope, start=start, end=end)
    stacks: dict[str, list[Decimal]] = {}

    def add(label: str, day: date, amount: Decimal) -> None:
        stacks.setdefault(label, [Decimal(0)] * len(days))[index[day]] += amount

    if stack_by == "token_type":
        columns = {token_type: f"cost_{token_type}_usd" for token_type in TOKEN_TYPES}
        rows = rollups.values("day").annotate(
            **{f"spend_{token_type}": Sum(column) for token_type, column in columns.items()}
        )
        for row in rows:
            for token_type in TOKEN_TYPES:
                add(token_type, row["day"], row[f"spend_{token_type}"])
        # every token type keeps its place, even at $0, so colours and legend order never shift
        for token_type in TOKEN_TYPES:
            stacks.setdefault(token_type, [Decimal(0)] * len(days))
        return SpendSeries(days=days, stacks=stacks, stack_by=stack_by)

    group_fields = {
        "team": ("team__slug",),
        "agent": ("team__slug", "agent__name"),
        "model": ("provider", "model"),
    }[stack_by]
    rows = rollups.values("day", *group_fields).annotate(
        spend_usd=Sum("cost_usd"), priced_calls=Sum(F("calls") - F("unpriced_calls"))
    )
    for row in rows:
        if row["priced_calls"]:  # an all-unpriced group has no spend to show, and must not read as $0
            add("/".join(str(row[name]) for name in group_fields), row["day"], row["spend_usd"])
    ordered = dict(sorted(stacks.items(), key=lambda item: (-sum(item[1], Decimal(0)), item[0])))
    return SpendSeries(days=days, stacks=ordered, stack_by=stack_by)


@dataclass(frozen=True)
class DailyUsage:
    day: date
    calls: int
    unpriced_calls: int
    calls_not_in_task: int
    tokens: dict[str, int]

    @property
    def total_input_tokens(self) -> int:
        return sum(self.tokens[token_type] for token_type in INPUT_TOKEN_TYPES)

    @property
    def cache_hit_rate(self) -> float | None:
        """Σ cache_read ÷ Σ total input for the day (SPEC.md); None when the day had no input."""
        total_input = self.total_input_tokens
        return self.tokens["cache_read"] / total_input if total_input else None


def usage_by_day(*, scope: Scope, start: date, end: date) -> list[DailyUsage]:
    """Calls and the six token counts per UTC day in [start, end), zero-filled, in one query."""
    sums = {
        "calls": Coalesce(Sum("calls"), 0),
        "unpriced_calls": Coalesce(Sum("unpriced_calls"), 0),
        "calls_not_in_task": Coalesce(Sum("calls_not_in_task"), 0),
        **{f"tokens_{token_type}": Coalesce(Sum(token_type), 0) for token_type in TOKEN_TYPES},
    }
    rows = {
        row["day"]: row
        for row in _scoped_rollups(scope=scope, start=start, end=end).values("day").annotate(**sums)
    }
    usage = []
    for day in days_in_window(start=start, end=end):
        row = rows.get(day)
        usage.append(
            DailyUsage(
                day=day,
                calls=row["calls"] if row else 0,
                unpriced_calls=row["unpriced_calls"] if row else 0,
                calls_not_in_task=row["calls_not_in_task"] if row else 0,
                tokens={token_type: row[f"tokens_{token_type}"] if row else 0 for token_type in TOKEN_TYPES},
            )
        )
    return usage


@dataclass(frozen=True)
class KpiTargets:
    """Reference targets (SPEC.md): an agent's own when one agent is in view, else the defaults."""

    cost_per_successful_task_usd: Decimal | None = None  # the agent's cost SLO; none without one agent
    cache_hit_rate: float = 0.75
    token_efficiency_index: float = 0.18
    step_inflation_ratio: float = 1.4


def kpi_targets(*, agent: Agent | None) -> KpiTargets:
    if agent is None:
        return KpiTargets()
    return KpiTargets(
        cost_per_successful_task_usd=agent.cost_slo_usd,
        cache_hit_rate=float(agent.target_cache_hit_rate),
        token_efficiency_index=float(agent.target_token_efficiency),
        step_inflation_ratio=float(agent.target_step_inflation),
    )


# which way is good for each KPI, keyed by its name on `Kpis` and `KpiTargets`
KPI_BETTER: dict[str, Literal["higher", "lower"]] = {
    "cost_per_successful_task_usd": "lower",
    "cache_hit_rate": "higher",
    "token_efficiency_index": "higher",
    "step_inflation_ratio": "lower",
}


def kpis_on_target(*, kpis: Kpis, targets: KpiTargets) -> dict[str, bool | None]:
    """Per KPI: True on target, False off it, None when there is no value or no target to compare."""
    status: dict[str, bool | None] = {}
    for name, better in KPI_BETTER.items():
        value, target = getattr(kpis, name), getattr(targets, name)
        if value is None or target is None:
            status[name] = None
        else:
            status[name] = value >= target if better == "higher" else value <= target
    return status
