"""The task trace page: one agent run step by step (issue 9, "Task trace")."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard import figures
from dashboard.tables import Column, Table
from finops.kpis.trace import task_trace
from finops.ledger.models import Task
from finops.ledger.tokens import TOKEN_TYPES


def tasks_table(tasks: list[Task], *, name: str = "expensive-tasks") -> Table:
    """A list of runs, each opening its step-by-step trace (every list of tasks links there)."""
    return Table(
        name=name,
        caption="The costliest runs with a call in this window; each opens its step-by-step trace",
        columns=[
            Column("Task", link=lambda task: reverse("dashboard:task", args=[task.pk])),
            Column("Team"),
            Column("Agent", link=lambda task: reverse("dashboard:agent", args=[task.agent_id])),
            Column("Outcome"),
            Column("Calls", "count"),
            Column("Cost (priced calls)", "usd"),
            Column("Unpriced calls", "count"),
            Column("Last call (UTC)", "datetime"),
        ],
        rows=[
            [
                task.task_id,
                task.team.slug,
                task.agent.name,
                task.status or "running / not reported",
                task.steps,
                task.cost_usd,
                task.unpriced_calls,
                task.last_call_at,
            ]
            for task in tasks
        ],
        sources=tasks,
        empty="No task made a call in this window: calls without a task_id belong to no run.",
    )


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
