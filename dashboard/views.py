"""Dashboard pages. Views only read the filters, call selectors and hand the results to a template."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.views.decorators.http import require_GET

from dashboard import figures
from dashboard.forms import PERIODS, STACK_BY_LABELS, OverviewFilterForm, overview_filters
from dashboard.tables import render_page
from dashboard.tasks import tasks_table
from finops.accounts.models import Team
from finops.kpis.selectors import Scope, agents_in_scope, kpis_for_scope, tasks_most_expensive
from finops.kpis.series import (
    kpi_targets,
    kpis_on_target,
    scope_for_principal,
    spend_by_day,
    usage_by_day,
)


def _agent_options(*, scope: Scope, team_selected: bool) -> list[tuple[str, str, str]]:
    """(value, label, teams) of every agent the person may see. Agent names are unique per team only,
    so without a team the label says which teams share a name (picking it shows that agent in all of
    them); `teams` (space-separated slugs) lets the page offer only the chosen team's agents."""
    teams_by_name: dict[str, list[str]] = {}
    for agent in agents_in_scope(scope=scope):
        teams_by_name.setdefault(agent.name, []).append(agent.team.slug)
    return [
        (name, name if team_selected else f"{name} ({', '.join(slugs)})", " ".join(slugs))
        for name, slugs in sorted(teams_by_name.items())
    ]


def query_string_with(request, **changes) -> str:
    """This page's query string with `changes` (None removes a parameter)."""
    query = request.GET.copy()
    for name, value in changes.items():
        query.pop(name, None)
        if value is not None:
            query[name] = value
    return query.urlencode()


def _stack_colours(*, teams: list[Team], stack_by: str, scope: Scope) -> dict[str, str]:
    """A team (or agent) keeps its colour on every page and window: the colour follows its id, not its
    rank in this window's spend."""
    if stack_by == "team":
        return {team.slug: figures.stable_colour(team.pk) for team in teams}
    if stack_by == "agent":
        return {
            f"{agent.team.slug}/{agent.name}": figures.stable_colour(agent.pk)
            for agent in agents_in_scope(scope=scope)
        }
    return {}


@login_required
@require_GET
def overview(request):
    form = OverviewFilterForm(request.GET)
    filters = overview_filters(form)
    if form.has_error("team") or form.has_error("agent"):  # e.g. a NUL byte: no team or agent has that name
        raise Http404("no such team or agent")
    resolved = scope_for_principal(principal=request.user, team_slug=filters.team, agent_name=filters.agent)
    window_start = datetime.combine(filters.start, time(0), tzinfo=UTC)
    window_end = datetime.combine(filters.end_exclusive, time(0), tzinfo=UTC)
    kpis = kpis_for_scope(scope=resolved.scope, start=window_start, end=window_end)
    team_options = list(Team.objects.restrict(request.user))
    visible = Scope(team_ids=frozenset(option.pk for option in team_options))
    targets = kpi_targets(agent=resolved.single_agent)
    has_data = bool(kpis.calls or kpis.tasks_ended)
    charts, expensive_tasks = {}, None
    if has_data:
        spend = spend_by_day(
            scope=resolved.scope, start=filters.start, end=filters.end_exclusive, stack_by=filters.stack_by
        )
        usage = usage_by_day(scope=resolved.scope, start=filters.start, end=filters.end_exclusive)
        charts = {
            "spend": figures.spend_chart(
                spend,
                colours=_stack_colours(teams=team_options, stack_by=filters.stack_by, scope=visible),
            ),
            "cache_hit": figures.cache_hit_chart(usage, target=targets.cache_hit_rate),
            "tokens": figures.token_chart(kpis.tokens),
        }
        expensive_tasks = tasks_table(
            tasks_most_expensive(scope=resolved.scope, start=window_start, end=window_end)
        )
    status = kpis_on_target(kpis=kpis, targets=targets)
    cost_slo = targets.cost_per_successful_task_usd
    bullets = {
        "cost_per_successful_task_usd": figures.kpi_bullet(
            chart_id="bullet-cost-per-task",
            value=None
            if kpis.cost_per_successful_task_usd is None
            else float(kpis.cost_per_successful_task_usd),
            target=None if cost_slo is None else float(cost_slo),
            on_target=status["cost_per_successful_task_usd"],
            axis_max=float(cost_slo or 0) * 1.5,
            value_format="$.2f",
        ),
        "cache_hit_rate": figures.kpi_bullet(
            chart_id="bullet-cache-hit",
            value=kpis.cache_hit_rate,
            target=targets.cache_hit_rate,
            on_target=status["cache_hit_rate"],
            axis_max=1.0,
            value_format=".0%",
        ),
        "token_efficiency_index": figures.kpi_bullet(
            chart_id="bullet-efficiency",
            value=kpis.token_efficiency_index,
            target=targets.token_efficiency_index,
            on_target=status["token_efficiency_index"],
            axis_max=targets.token_efficiency_index * 2,
            value_format=".2f",
        ),
        "step_inflation_ratio": figures.kpi_bullet(
            chart_id="bullet-inflation",
            value=kpis.step_inflation_ratio,
            target=targets.step_inflation_ratio,
            on_target=status["step_inflation_ratio"],
            axis_max=targets.step_inflation_ratio * 2,
            value_format=".1f",
        ),
    }
    context = {
        "form": form,
        "periods": [
            (name, label, query_string_with(request, period=name, start=None, end=None))
            for name, label in PERIODS.items()
        ],
        "filters": filters,
        "team": resolved.team,
        "agents": resolved.agents,
        "single_agent": resolved.single_agent,
        "team_options": team_options,
        "agent_options": _agent_options(scope=visible, team_selected=resolved.team is not None),
        "stack_by_options": list(STACK_BY_LABELS.items()),
        "kpis": kpis,
        "targets": targets,
        "has_data": has_data,
        "charts": charts,
        "expensive_tasks": expensive_tasks,
        "bullets": bullets,
        "status": status,
    }
    return render_page(request, "dashboard/overview.html", context, page="overview")
