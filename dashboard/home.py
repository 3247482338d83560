"""Home: the page each role lands on after login, answering that role's question (issue 9, "Home per
role"). `/home/` is the home (login goes there, the brand links there); `/` stays the Overview, so
bookmarks and links to it keep working.

- finops (and admin): this month's spend and month-end forecast (finops.kpis.forecast, the forecast
  alert's) against each team's monthly budget, by team and by provider, linking to the Forecast page;
  bills are not reconciled in finops yet, and the page says so.
- sre: allowances near or over their limit, open alerts, runaway tasks, unpriced calls.
- tech_lead: prompt versions per agent: calls, cache hit rate, $ per call and the cost of the calls in
  tasks (from the per-day prompt-version rollup: tasks cannot be counted distinctly from days).
- pm: agents against their cost SLO ($ per successful task).
- ml: models by spend (the Models page, where it exists, has the rest).
- viewer: the team Overview (a redirect: it is the viewer's question).

A person with several roles lands on the home of the highest (HOME_ORDER: the order of SPEC's roles
table, broadest first), over the teams where they hold it, and the page links to the homes of their
other roles (?as=<role>). The team switcher's ?team= shows one team: the home of the highest role the
person holds there. Admin and finops see every team, so every home is offered to them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard.formatting import alert_figure_of
from dashboard.tables import Column, Table, render_page
from finops.accounts.models import Team
from finops.accounts.selectors import memberships_of
from finops.alerts.selectors import alerts_open, runaway_tasks
from finops.bills.months import month_is_closed
from finops.guardrails.models import Allowance
from finops.guardrails.selectors import allowances_by_use
from finops.kpis import homes
from finops.kpis.forecast import forecasts_by_team
from finops.kpis.selectors import Scope
from finops.ledger.models import Agent

HOME_ORDER = ("finops", "sre", "tech_lead", "pm", "ml", "viewer")
HOME_LABELS = {
    "finops": "Spend against budgets",
    "sre": "Guardrails and alerts",
    "tech_lead": "Prompt versions",
    "pm": "Agents against their cost SLO",
    "ml": "Models",
    "viewer": "Team overview",
}
RECENT_DAYS = 30  # the window of the homes that are not about the month


def _role_teams(user) -> dict[str, frozenset[int] | None]:
    """Each home the person may open, with the teams it covers (None: every team)."""
    if user.sees_every_team:
        return dict.fromkeys(HOME_ORDER)
    teams: dict[str, set[int]] = {}
    for membership in memberships_of(user=user):
        teams.setdefault(membership.role, set()).add(membership.team_id)
    return {role: frozenset(teams[role]) for role in HOME_ORDER if role in teams}


def _window(days: int) -> tuple[date, date]:
    """The last `days` UTC days, today included: [first, end) with end tomorrow."""
    today = timezone.now().astimezone(UTC).date()
    return today - timedelta(days=days - 1), today + timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@login_required
@require_GET
def home(request):
    user = request.user
    homes_of = _role_teams(user)
    team = None
    slug = (request.GET.get("team") or "").strip()
    if slug:
        team = Team.objects.restrict(user).filter(slug=slug).first()
        if team is None:
            raise Http404("no such team")
        homes_of = {
            role: frozenset({team.pk})
            for role, team_ids in homes_of.items()
            if team_ids is None or team.pk in team_ids
        }
    wanted = (request.GET.get("as") or "").strip()
    if wanted and wanted not in homes_of:
        return HttpResponseBadRequest(
            f"as={wanted}: not a role you hold{' in ' + team.slug if team else ''} "
            f"(yours: {', '.join(homes_of) or 'none'})\n",
            content_type="text/plain; charset=utf-8",
        )
    if not homes_of:  # a person of no team: nothing to show but the (empty) Overview
        return redirect("dashboard:overview")
    role = wanted or next(iter(homes_of))
    if role == "viewer":
        return redirect(
            reverse("dashboard:overview") + (f"?{urlencode({'team': team.slug})}" if team else "")
        )
    team_ids = homes_of[role]
    scope = Scope(team_ids=team_ids)
    teams = {team.pk: team for team in Team.objects.restrict(user)}
    context = {
        "role": role,
        "role_label": HOME_LABELS[role],
        "team": team,
        "scope_teams": [teams[pk] for pk in sorted(team_ids, key=lambda pk: teams[pk].slug)]
        if team_ids is not None
        else [],
        "other_homes": [
            (other, HOME_LABELS[other], urlencode({"as": other, **({"team": team.slug} if team else {})}))
            for other in homes_of
            if other != role
        ],
    }
    context |= ROLE_HOMES[role](request, scope=scope, teams=teams)
    return render_page(request, "dashboard/home.html", context, page=f"home-{role}")


# --- one function per role: the tables of its home ------------------------------------------------------


def _finops_home(request, *, scope: Scope, teams: dict[int, Team]) -> dict:
    now = timezone.now()
    team_ids = sorted(teams if scope.team_ids is None else scope.team_ids, key=lambda pk: teams[pk].slug)
    # the forecast alert's and the Forecast page's own function (finops.kpis.forecast)
    forecasts = forecasts_by_team(scope=scope, team_ids=team_ids, now=now)
    month_start = now.astimezone(UTC).date().replace(day=1)
    rows, classes = [], []
    for team_id in team_ids:
        forecast = forecasts[team_id]
        budget = teams[team_id].monthly_budget_usd
        share = forecast.projected_usd / budget if budget else None
        status = (
            "no budget"
            if budget is None
            else "over budget"
            if forecast.projected_usd > budget
            else "may pass budget"
            if forecast.high_usd > budget
            else "within budget"
        )
        rows.append(
            [
                teams[team_id].slug,
                forecast.to_date_usd,
                forecast.projected_usd,
                forecast.low_usd,
                forecast.high_usd,
                budget,
                share,
                status,
            ]
        )
        classes.append("over" if status in {"over budget", "may pass budget"} else "")
    forecast_page = reverse("dashboard:forecast")
    budgets = Table(
        name="budgets",
        caption=f"{month_start:%B %Y} so far and projected to month end (with its band), "
        "against each team's monthly budget",
        columns=[
            Column(
                "Team", link=lambda team_id: f"{forecast_page}?{urlencode({'team': teams[team_id].slug})}"
            ),
            Column("Month to date", "usd"),
            Column("Forecast month end", "usd"),
            Column("Band low", "usd"),
            Column("Band high", "usd"),
            Column("Monthly budget", "usd"),
            Column("Forecast ÷ budget", "percent"),
            Column("Status"),
        ],
        rows=rows,
        foot=[
            "All teams",
            *(sum((row[column] for row in rows), Decimal(0)) for column in (1, 2)),
            None,
            None,
            None,
            None,
            "",
        ]
        if len(rows) > 1
        else None,
        row_classes=classes,
        sources=team_ids,
        empty="No team yet.",
    )
    spend = homes.spend_by_team_and_provider(
        scope=scope, start=month_start, end=now.date() + timedelta(days=1)
    )
    by_provider = Table(
        name="spend-by-provider",
        caption=f"{month_start:%B %Y} so far, per team and provider (priced calls; unpriced ones counted)",
        columns=[
            Column("Team"),
            Column("Provider"),
            Column("Month to date", "usd"),
            Column("Calls", "count"),
            Column("Unpriced calls", "count"),
        ],
        rows=[
            [teams[row.team_id].slug, row.provider, priced(row), row.calls, row.unpriced_calls]
            for row in sorted(spend, key=lambda row: (teams[row.team_id].slug, -row.cost_usd, row.provider))
        ],
        empty="No call this month yet.",
    )
    last_month = (month_start - timedelta(days=1)).replace(day=1)
    return {
        "tables": [budgets, by_provider],
        "month_start": month_start,
        # the month finops closes next: is its bill final yet (the Months page closes it)
        "last_month": last_month,
        "last_month_closed": month_is_closed(last_month),
        "months_page": f"{reverse('dashboard:months')}?{urlencode({'month': f'{last_month:%Y-%m}'})}",
        "forecast_page": forecast_page,
        "unbudgeted": sum(teams[team_id].monthly_budget_usd is None for team_id in team_ids),
    }


def _sre_home(request, *, scope: Scope, teams: dict[int, Team]) -> dict:
    user = request.user
    allowances = Allowance.objects.restrict(user).select_related("team", "agent")
    alerts = alerts_open(principal=user)
    if scope.team_ids is not None:
        allowances = allowances.filter(team_id__in=scope.team_ids)
        alerts = alerts.filter(team_id__in=scope.team_ids)
    uses = allowances_by_use(allowances=list(allowances))
    guardrails = reverse("dashboard:guardrails")
    allowance_table = Table(
        name="allowances",
        caption="Allowances by how much of their current window is used (near: past warn at)",
        columns=[
            Column("Allowance", link=lambda use: guardrails),
            Column("Window"),
            Column("Used $", "usd"),
            Column("Limit $", "usd"),
            Column("Used tokens", "count"),
            Column("Limit tokens", "count"),
            Column("Used", "percent"),
            Column("Warn at", "percent"),
            Column("Status"),
            Column("Resets (UTC)", "datetime"),
        ],
        rows=[
            [
                use.allowance.scope_name,
                use.allowance.window,
                use.live.used_usd,
                use.allowance.limit_usd,
                use.live.used_tokens,
                use.allowance.limit_tokens,
                use.fraction,
                use.allowance.warn_at,
                use.state,
                use.live.resets_at,
            ]
            for use in uses
        ],
        row_classes=["over" if use.state != "ok" else "" for use in uses],
        sources=uses,
        empty="No allowance in these teams: add one on the Guardrails page.",
    )
    open_alerts = list(alerts)
    alert_table = Table(
        name="open-alerts",
        caption="Open alerts, firing first",
        columns=[
            Column("Alert", link=lambda alert: reverse("dashboard:alert-detail", args=[alert.pk])),
            Column("Team"),
            Column("Subject"),
            Column("State"),
            Column("Value", "number", display=lambda value, alert: alert_figure_of(alert, value)),
            Column("Threshold", "number", display=lambda value, alert: alert_figure_of(alert, value)),
            Column("Since (UTC)", "datetime"),
            Column("Acknowledged by"),
        ],
        rows=[
            [
                alert.rule.name,
                alert.team.slug if alert.team else "",
                alert.subject,
                alert.state,
                alert.value,
                alert.threshold,
                alert.started_at,
                alert.acknowledged_by.get_username() if alert.acknowledged_by else "",
            ]
            for alert in open_alerts
        ],
        row_classes=["over" if alert.state == "firing" else "" for alert in open_alerts],
        sources=open_alerts,
        empty="No open alert.",
    )
    runaway = runaway_tasks(principal=user, team_ids=scope.team_ids)
    agents = {agent.pk: agent for agent in Agent.objects.restrict(user).filter(pk__in=_agent_ids(runaway))}
    runaway_table = Table(
        name="runaway-tasks",
        caption="Running tasks past a runaway_task rule (no outcome yet, a call in the last 15 minutes)",
        columns=[
            Column("Task", link=lambda found: reverse("dashboard:task", args=[found.task.pk])),
            Column("Team"),
            Column("Agent"),
            Column("Steps", "count"),
            Column("Cost so far", "usd"),
            Column("Unpriced calls", "count"),
            Column("Last call (UTC)", "datetime"),
            Column("Past rules"),
        ],
        rows=[
            [
                found.task.task_id,
                teams[found.task.team_id].slug,
                agents[found.task.agent_id].name,
                found.task.steps,
                found.task.cost_usd,
                found.task.unpriced_calls,
                found.task.last_call_at,
                ", ".join(rule.name for rule in found.rules),
            ]
            for found in runaway
        ],
        sources=runaway,
        empty="No running task is past a runaway_task rule (add one on the Rules page to watch them).",
    )
    start, end = _window(RECENT_DAYS)
    unpriced = homes.unpriced_calls_by_model(scope=scope, start=start, end=end)
    agents = {
        agent.pk: agent
        for agent in Agent.objects.restrict(user).filter(pk__in={r.agent_id for r in unpriced})
    }
    unpriced_table = Table(
        name="unpriced-calls",
        caption=f"Calls of the last {RECENT_DAYS} days whose model has no price (cost unknown, never $0)",
        columns=[
            Column("Team"),
            Column("Agent", link=lambda row: reverse("dashboard:agent", args=[row.agent_id])),
            Column("Provider"),
            Column("Model"),
            Column("Unpriced calls", "count"),
            Column("Last day", "date"),
        ],
        rows=[
            [
                teams[row.team_id].slug,
                agents[row.agent_id].name,
                row.provider,
                row.model,
                row.unpriced_calls,
                row.last_day,
            ]
            for row in unpriced
        ],
        sources=unpriced,
        empty=f"Every call of the last {RECENT_DAYS} days has a price.",
    )
    return {
        "tables": [allowance_table, alert_table, runaway_table, unpriced_table],
        "firing": sum(alert.state == "firing" for alert in open_alerts),
        "near_limit": sum(use.state != "ok" for use in uses),
    }


def priced(row) -> Decimal | None:
    """A row's spend, or None (shown "—", unknown) when every one of its calls is unpriced: unknown
    prices are flagged, never $0 (SPEC.md)."""
    return None if row.calls and row.unpriced_calls == row.calls else row.cost_usd


def _agent_ids(runaway) -> set[int]:
    return {found.task.agent_id for found in runaway}


def _tech_lead_home(request, *, scope: Scope, teams: dict[int, Team]) -> dict:
    start, end = _window(RECENT_DAYS)
    versions = homes.prompt_versions_report(scope=scope, start=start, end=end)
    agents = {
        agent.pk: agent
        for agent in Agent.objects.restrict(request.user)
        .select_related("team")
        .filter(pk__in={version.agent_id for version in versions})
    }
    table = Table(
        name="prompt-versions",
        caption=f"Prompt versions called in the last {RECENT_DAYS} UTC days (today included), newest first "
        "per agent; $ per call over the priced calls",
        columns=[
            Column("Agent", link=lambda version: reverse("dashboard:agent", args=[version.agent_id])),
            Column("Team"),
            Column("Prompt version"),
            Column("First call (UTC)", "datetime"),
            Column("Last call (UTC)", "datetime"),
            Column("Calls", "count"),
            Column("Cache hit rate", "percent"),
            Column("Cost", "usd"),
            Column("$ per call", "usd"),
            Column("Calls in tasks", "count"),
            Column("Cost in tasks", "usd"),
            Column("Unpriced calls", "count"),
        ],
        rows=[
            [
                agents[version.agent_id].name,
                agents[version.agent_id].team.slug,
                version.prompt_version,
                version.first_call_at,
                version.last_call_at,
                version.calls,
                version.cache_hit_rate,
                priced(version),
                version.cost_per_call_usd,
                version.calls_in_tasks,
                version.known_cost_in_tasks_usd,
                version.unpriced_calls,
            ]
            for version in versions
        ],
        sources=versions,
        empty=f"No call of the last {RECENT_DAYS} days names a prompt_version: send it with each event.",
    )
    return {"tables": [table]}


def _pm_home(request, *, scope: Scope, teams: dict[int, Team]) -> dict:
    start, end = _window(RECENT_DAYS)
    report = homes.agents_against_cost_slo(scope=scope, start=_midnight(start), end=_midnight(end))
    report.sort(
        key=lambda row: ({True: 0, None: 1, False: 2}[row.over_slo], row.agent.team.slug, row.agent.name)
    )
    table = Table(
        name="agents-slo",
        caption=f"Tasks ended in the last {RECENT_DAYS} days: $ per successful task against each agent's cost SLO",
        columns=[
            Column("Agent", link=lambda row: reverse("dashboard:agent", args=[row.agent.pk])),
            Column("Team"),
            Column("Tasks ended", "count"),
            Column("Successful", "count"),
            Column("$ per successful task", "usd"),
            Column("Cost SLO", "usd"),
            Column("Status"),
        ],
        rows=[
            [
                row.agent.name,
                row.agent.team.slug,
                row.tasks_ended,
                row.successful,
                row.cost_per_successful_task_usd,
                row.agent.cost_slo_usd,
                {
                    True: "over SLO",
                    False: "within SLO",
                    None: "no SLO" if row.agent.cost_slo_usd is None else "no successful task",
                }[row.over_slo],
            ]
            for row in report
        ],
        row_classes=["over" if row.over_slo else "" for row in report],
        sources=report,
        empty="No agent in these teams yet.",
    )
    return {"tables": [table], "over_slo": sum(bool(row.over_slo) for row in report)}


def _ml_home(request, *, scope: Scope, teams: dict[int, Team]) -> dict:
    start, end = _window(RECENT_DAYS)
    models = homes.spend_by_model(scope=scope, start=start, end=end)
    total = sum((row.cost_usd for row in models), Decimal(0))
    table = Table(
        name="models",
        caption=f"Models by spend over the last {RECENT_DAYS} days",
        columns=[
            Column("Provider"),
            Column("Model"),
            Column("Spend", "usd"),
            Column("Share of spend", "percent"),
            Column("Calls", "count"),
            Column("Unpriced calls", "count"),
            Column("Tokens", "count"),
        ],
        rows=[
            [
                row.provider,
                row.model,
                priced(row),
                None if priced(row) is None else row.cost_usd / total if total else None,
                row.calls,
                row.unpriced_calls,
                row.tokens,
            ]
            for row in models
        ],
        foot=[
            "All models",
            "",
            total,
            Decimal(1) if total else None,
            sum(r.calls for r in models),
            sum(r.unpriced_calls for r in models),
            sum(r.tokens for r in models),
        ]
        if models
        else None,
        empty=f"No call in the last {RECENT_DAYS} days.",
    )
    try:
        models_page = reverse("dashboard:models")
    except NoReverseMatch:  # the Models page is another branch's; link to it once it exists
        models_page = None
    return {"tables": [table], "models_page": models_page}


ROLE_HOMES = {
    "finops": _finops_home,
    "sre": _sre_home,
    "tech_lead": _tech_lead_home,
    "pm": _pm_home,
    "ml": _ml_home,
}
