"""Dashboard pages. Views only read the filters, call selectors and hand the results to a template."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET

from dashboard import figures
from dashboard.filtering import page_filters
from dashboard.forms import STACK_BY_LABELS
from dashboard.tables import render_page
from dashboard.tasks import tasks_table
from finops.accounts.models import Team
from finops.kpis.selectors import Scope, agents_in_scope, kpis_for_scope, tasks_most_expensive
from finops.kpis.series import (
    kpi_targets,
    kpis_on_target,
    spend_by_day,
    usage_by_day,
)


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
    shared = page_filters(request)
    filters, resolved, team_options = shared.filters, shared.resolved, shared.team_options
    window_start, window_end = shared.window_start, shared.window_end
    kpis = kpis_for_scope(scope=resolved.scope, start=window_start, end=window_end)
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
                colours=_stack_colours(teams=team_options, stack_by=filters.stack_by, scope=shared.visible),
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
        **shared.context(),
        "agents": resolved.agents,
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
