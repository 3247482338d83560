"""The task trace page: one agent run step by step (issue 9, "Task trace")."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from dashboard import figures
from finops.kpis.trace import task_trace
from finops.ledger.models import Task
from finops.ledger.tokens import TOKEN_TYPES


@login_required
@require_GET
def task_trace_page(request, task_pk: int):
    task = get_object_or_404(Task.objects.restrict(request.user).select_related("team", "agent"), pk=task_pk)
    trace = task_trace(task=task)
    charts = {}
    if trace.steps:
        charts = {"context": figures.trace_context_chart(trace), "cost": figures.trace_cost_chart(trace)}
    return render(
        request,
        "dashboard/task_trace.html",
        {
            "task": task,
            "agent": task.agent,
            "trace": trace,
            "charts": charts,
            "token_types": [figures.TOKEN_TYPE_LABELS[name] for name in TOKEN_TYPES],
            "token_names": TOKEN_TYPES,
        },
    )
