"""The agent page (pm, tech_lead): the agent's $/successful task against its cost SLO, outcomes, steps
per run against the ideal, cost per run, its costliest runs, and its settings, changed here by the
roles SPEC.md allows (the same rule as PATCH /api/v1/agents)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from dashboard import figures
from dashboard.filtering import query_string_with
from dashboard.formatting import usd
from dashboard.forms import PERIODS, OverviewFilterForm, overview_filters
from dashboard.tables import render_page
from dashboard.tasks import tasks_table
from finops.accounts.selectors import team_role
from finops.kpis.agents import agent_report
from finops.kpis.selectors import Scope, kpis_for_scope, tasks_most_expensive
from finops.kpis.series import kpi_targets, kpis_on_target
from finops.ledger.models import Agent
from finops.ledger.services import (
    AGENT_SETTING_FIELDS,
    SettingNotAllowed,
    agent_fields_editable,
    agent_settings_update,
)

SETTING_LABELS = {
    "cost_slo_usd": "Cost SLO ($ per successful task)",
    "ideal_steps": "Ideal steps per run",
    "max_steps": "Kill switch: max steps per run",
    "max_cost_usd": "Kill switch: max $ per run",
    "target_cache_hit_rate": "Target cache hit rate (0–1)",
    "target_token_efficiency": "Target token efficiency (0–1)",
    "target_step_inflation": "Target step inflation (×)",
}


class AgentSettingsForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = AGENT_SETTING_FIELDS
        labels = SETTING_LABELS

    def __init__(self, *args, editable: frozenset[str], **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            # a disabled field keeps its stored value on POST: those of other roles, and those a
            # partial POST leaves out (as PATCH /api/v1/agents leaves them)
            field.disabled = name not in editable or (self.is_bound and name not in self.data)

    def shown(self) -> list[tuple[str, str]]:
        """(label, value) as a person reads them: dollars, ratios, steps."""
        agent = self.instance
        return [
            (SETTING_LABELS[name], _setting_text(name, getattr(agent, name))) for name in AGENT_SETTING_FIELDS
        ]


def _setting_text(name: str, value) -> str:
    if value is None:
        return "—"
    if name.endswith("_usd"):
        return usd(value)
    if name == "target_step_inflation":
        return f"{value.normalize():f}×"
    return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)


@login_required
@require_http_methods(["GET", "POST"])
def agent_page(request, agent_pk: int):
    agent = get_object_or_404(Agent.objects.restrict(request.user).select_related("team"), pk=agent_pk)
    editable = agent_fields_editable(user=request.user, agent=agent)
    settings_form = AgentSettingsForm(
        request.POST or None, instance=Agent.objects.get(pk=agent.pk), editable=editable
    )
    if request.method == "POST":
        if not editable:
            raise PermissionDenied(
                "changing an agent's settings needs the pm, tech_lead or sre role of its team"
            )
        # a browser sends no disabled field: one of another role's fields here is refused, as the API does
        refused = sorted(
            name for name in AGENT_SETTING_FIELDS if name in request.POST and name not in editable
        )
        if refused:
            raise PermissionDenied(f"your role may not change {', '.join(refused)}")
        if settings_form.is_valid():
            changes = {name: settings_form.cleaned_data[name] for name in settings_form.changed_data}
            try:
                agent_settings_update(
                    agent=agent,
                    role=team_role(user=request.user, team_id=agent.team_id),
                    changes=changes,
                    principal=request.user,
                )
            except SettingNotAllowed as error:
                raise PermissionDenied(str(error)) from None
            messages.success(
                request, f"Saved: {', '.join(SETTING_LABELS[name] for name in changes) or 'nothing changed'}."
            )
            return redirect(request.get_full_path())

    filter_form = OverviewFilterForm(request.GET)
    filters = overview_filters(filter_form)
    start = datetime.combine(filters.start, time(0), tzinfo=UTC)
    end = datetime.combine(filters.end_exclusive, time(0), tzinfo=UTC)
    scope = Scope(team_ids=frozenset({agent.team_id}), agent_ids=frozenset({agent.pk}))
    kpis = kpis_for_scope(scope=scope, start=start, end=end)
    targets = kpi_targets(agent=agent)
    report = agent_report(agent=agent, start=start, end=end)
    has_data = bool(kpis.calls or kpis.tasks_ended)
    charts = {}
    if report.days:
        charts["cost_per_success"] = figures.cost_per_success_chart(report, slo=agent.cost_slo_usd)
    if report.steps:
        charts["steps"] = figures.steps_chart(report, ideal_steps=agent.ideal_steps)
    over_slo = (
        agent.cost_slo_usd is not None
        and kpis.cost_per_successful_task_usd is not None
        and kpis.cost_per_successful_task_usd > agent.cost_slo_usd
    )
    return render_page(
        request,
        "dashboard/agent.html",
        {
            "agent": agent,
            "filters": filters,
            "form": filter_form,
            "periods": [
                (name, label, query_string_with(request, period=name, start=None, end=None))
                for name, label in PERIODS.items()
            ],
            "kpis": kpis,
            "targets": targets,
            "status": kpis_on_target(kpis=kpis, targets=targets),
            "over_slo": over_slo,
            "report": report,
            "charts": charts,
            "has_data": has_data,
            "expensive_tasks": tasks_table(tasks_most_expensive(scope=scope, start=start, end=end)),
            "settings_form": settings_form,
            "editable": editable,
            "slo_gap": (
                None
                if agent.cost_slo_usd is None or kpis.cost_per_successful_task_usd is None
                else kpis.cost_per_successful_task_usd - agent.cost_slo_usd
            ),
            "zero": Decimal(0),
        },
        page=f"agent-{agent.name}",
    )
