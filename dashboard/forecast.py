"""The Forecast page: each team's spend this month and its projected month end, with an uncertainty
band, against the team's monthly budget; a past month (?month=YYYY-MM) shows what was spent against
it. The projection is finops.kpis.forecast's, the very number the `forecast` alert judges. Budgets are
set here by the finops and admin roles (SPEC.md, roles), audited (finops.accounts.services)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import plotly.graph_objects as go
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard.figures import PALETTE, TARGET_COLOUR, Chart, _base_layout, _figure_json
from dashboard.filtering import agent_options
from dashboard.formatting import usd
from dashboard.tables import Column, Table, render_page
from finops.accounts.models import Team
from finops.accounts.selectors import principal_manages_billing
from finops.accounts.services import BudgetNotAllowed, team_budget_set
from finops.guardrails.windows import org_time_zone, window_bounds
from finops.kpis.forecast import Forecast, forecasts_by_team, month_bounds
from finops.kpis.selectors import Scope, call_totals
from finops.kpis.series import scope_for_principal

SPENT_COLOUR = PALETTE[0]
PROJECTED_COLOUR = "#93c5fd"  # the spent colour, lighter: what is not spent yet
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
METHOD = (
    "Projected month end = spend so far this month + the average daily spend of the last 7 days × the "
    "days left; the band is ± 2 standard deviations of the daily spend of the last 7 whole days, "
    "widened for the days left. The forecast alert fires on the same projection."
)


class BudgetForm(forms.Form):
    monthly_budget_usd = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=16,
        decimal_places=2,
        label="Monthly budget ($)",
        help_text="empty: no budget",
    )


@dataclass(frozen=True)
class TeamMonth:
    team: Team
    budget: Decimal | None
    spent: Decimal  # the month so far, or the whole past month
    forecast: Forecast | None  # the current month only

    @property
    def judged(self) -> Decimal:
        return self.forecast.projected_usd if self.forecast else self.spent

    @property
    def share_of_budget(self) -> float | None:
        return float(self.judged / self.budget) if self.budget else None

    @property
    def status(self) -> str:
        if self.budget is None:
            return "no budget"
        if self.judged > self.budget:
            return "over budget"
        if self.forecast and self.forecast.high_usd > self.budget:
            return "may exceed"
        return "within budget"


def _month_asked(text: str, *, current: date) -> tuple[date, str | None]:
    """The month of ?month=YYYY-MM (its first day), or the current one and why that one was not."""
    if not text:
        return current, None
    found = MONTH.match(text)
    if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        return current, f"month={text!r} is not a month: give it as YYYY-MM, e.g. {current:%Y-%m}."
    asked = date(int(found[1]), int(found[2]), 1)
    if asked > current:
        return current, f"{asked:%B %Y} has not started: showing this month."
    return asked, None


def _previous(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def forecast_chart(rows: list[TeamMonth], *, current: bool) -> Chart:
    """Per team: spent, projected with its band (current month), and the budget as a red mark."""
    names = [row.team.slug for row in rows]
    data = [
        go.Bar(
            name="spent so far" if current else "spent",
            x=names,
            y=[float(row.spent) for row in rows],
            marker_color=SPENT_COLOUR,
            hovertemplate="%{x}: $%{y:,.2f} spent<extra></extra>",
        )
    ]
    if current:
        data.append(
            go.Bar(
                name="projected month end (whisker: likely range)",
                x=names,
                y=[float(row.forecast.projected_usd) for row in rows],
                marker_color=PROJECTED_COLOUR,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [float(row.forecast.high_usd - row.forecast.projected_usd) for row in rows],
                    "arrayminus": [float(row.forecast.projected_usd - row.forecast.low_usd) for row in rows],
                    "color": "#374151",
                },
                hovertemplate="%{x}: $%{y:,.2f} projected<extra></extra>",
            )
        )
    budgeted = [row for row in rows if row.budget is not None]
    if budgeted:
        data.append(
            go.Scatter(
                name="monthly budget",
                mode="markers",
                x=[row.team.slug for row in budgeted],
                y=[float(row.budget) for row in budgeted],
                marker={
                    "symbol": "line-ew-open",
                    "size": 48,
                    "color": TARGET_COLOUR,
                    "line": {"width": 3, "color": TARGET_COLOUR},
                },
                hovertemplate="%{x}: $%{y:,.2f} budget<extra></extra>",
            )
        )
    figure = go.Figure(
        data=data,
        layout=_base_layout(
            barmode="group",
            height=340,
            hovermode="closest",
            yaxis={"gridcolor": "#e5e7eb", "rangemode": "tozero", "tickprefix": "$"},
        ),
    )
    title = "Spend against budget, projected to the month's end" if current else "Spend against budget"
    return Chart("forecast", title, _figure_json(figure))


def forecast_table(rows: list[TeamMonth], *, current: bool, month: date) -> Table:
    budgets = [row.budget for row in rows if row.budget is not None]
    total_budget = sum(budgets, Decimal(0)) if budgets else None
    total_spent = sum((row.spent for row in rows), Decimal(0))
    if current:
        columns = [
            Column("Team"),
            Column("Monthly budget", "usd"),
            Column("Spent so far", "usd"),
            Column("$ per day (last 7 days)", "usd"),
            Column("Projected month end", "usd"),
            Column("Low", "usd"),
            Column("High", "usd"),
            Column("Projected of budget", "percent"),
            Column("Status"),
        ]
        body = [
            [
                row.team.slug,
                row.budget,
                row.spent,
                row.forecast.daily_rate_usd,
                row.forecast.projected_usd,
                row.forecast.low_usd,
                row.forecast.high_usd,
                row.share_of_budget,
                row.status,
            ]
            for row in rows
        ]
        projected = sum((row.forecast.projected_usd for row in rows), Decimal(0))
        rate = sum((row.forecast.daily_rate_usd for row in rows), Decimal(0))
        # a band of the sum is not the sum of the bands: left blank
        foot = ["All shown", total_budget, total_spent, rate, projected, None, None, None, ""]
    else:
        columns = [
            Column("Team"),
            Column("Monthly budget", "usd"),
            Column("Spent", "usd"),
            Column("Of budget", "percent"),
            Column("Status"),
        ]
        body = [[row.team.slug, row.budget, row.spent, row.share_of_budget, row.status] for row in rows]
        foot = ["All shown", total_budget, total_spent, None, ""]
    return Table(
        name="teams",
        caption=f"Spend per team in {month:%B %Y} against its monthly budget",
        columns=columns,
        rows=body,
        foot=foot if rows else None,
        empty="You see no team.",
    )


def _budget_save(request) -> tuple[Team | None, BudgetForm]:
    """A budget form's POST: a team the person cannot see is a 404, one they may not budget a 403."""
    team = get_object_or_404(Team.objects.restrict(request.user), slug=request.POST.get("team") or "")
    if not principal_manages_billing(request.user):
        raise PermissionDenied("setting a team's monthly budget needs the finops or admin role")
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return None, form
    try:
        team_budget_set(
            team=team, monthly_budget_usd=form.cleaned_data["monthly_budget_usd"], principal=request.user
        )
    except BudgetNotAllowed as error:
        raise PermissionDenied(str(error)) from None
    budget = form.cleaned_data["monthly_budget_usd"]
    messages.success(
        request, f"{team.slug}: monthly budget {'removed' if budget is None else 'set to ' + usd(budget)}."
    )
    return team, form


@login_required
@require_http_methods(["GET", "POST"])
def forecast_page(request):
    may_budget = principal_manages_billing(request.user)
    budget_form, budget_team = BudgetForm(), None
    if request.method == "POST":
        saved, budget_form = _budget_save(request)
        if saved is not None:
            return redirect(request.get_full_path())
        budget_team = request.POST.get("team")
    team_slug = (request.GET.get("team") or "").strip() or None
    agent_name = (request.GET.get("agent") or "").strip() or None
    if (team_slug and "\x00" in team_slug) or (agent_name and "\x00" in agent_name):
        raise Http404("no such team or agent")
    resolved = scope_for_principal(principal=request.user, team_slug=team_slug, agent_name=agent_name)
    now = timezone.now()
    current_month = window_bounds(window="month", at=now)[0].astimezone(org_time_zone()).date()
    month, month_error = _month_asked((request.GET.get("month") or "").strip(), current=current_month)
    is_current = month == current_month

    team_options = list(Team.objects.restrict(request.user))
    teams = [team for team in team_options if resolved.team is None or team.pk == resolved.team.pk]
    if resolved.scope.agent_ids is not None:  # an agent's teams only
        teams = [team for team in teams if any(agent.team_id == team.pk for agent in resolved.agents)]
    if is_current:
        forecasts = forecasts_by_team(scope=resolved.scope, team_ids=[team.pk for team in teams], now=now)
        rows = [
            TeamMonth(team, team.monthly_budget_usd, forecasts[team.pk].to_date_usd, forecasts[team.pk])
            for team in teams
        ]
    else:
        start, end = month_bounds(month)
        rows = [
            TeamMonth(
                team,
                team.monthly_budget_usd,
                call_totals(
                    scope=Scope(team_ids=frozenset({team.pk}), agent_ids=resolved.scope.agent_ids),
                    start=start,
                    end=end,
                )["cost_usd"],
                None,
            )
            for team in teams
        ]
    has_spend = any(row.spent or (row.forecast and row.forecast.projected_usd) for row in rows)
    visible = Scope(team_ids=frozenset(option.pk for option in team_options))
    window_end = now if is_current else month_bounds(month)[1]
    context = {
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "month_error": month_error,
        "is_current": is_current,
        "previous_month": f"{_previous(month):%Y-%m}",
        "current_month_value": f"{current_month:%Y-%m}",
        "time_zone": settings.FINOPS_TIME_ZONE,
        "days_left": rows[0].forecast.days_left if is_current and rows else None,
        "window_end": window_end,
        "filters": {"team": team_slug, "agent": agent_name},
        "team": resolved.team,
        "team_options": team_options,
        "agent_options": agent_options(scope=visible, team_selected=resolved.team is not None),
        "rows": rows,
        "has_spend": has_spend,
        "chart": forecast_chart(rows, current=is_current) if has_spend else None,
        "table": forecast_table(rows, current=is_current, month=month),
        "method": METHOD,
        "may_budget": may_budget,
        "budget_form": budget_form,
        "budget_team": budget_team,
    }
    return render_page(request, "dashboard/forecast.html", context, page="forecast")
