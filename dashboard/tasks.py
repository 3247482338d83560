"""The task trace page: one agent run step by step (issue 9, "Task trace")."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard import figures
from dashboard.tables import Column, Table, render_page
from finops.kpis.trace import TaskTrace, task_trace
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


def steps_table(trace: TaskTrace) -> Table:
    """The run's calls as a file: exact costs and token counts, the tool calls by name with repeats
    marked. The page draws its own richer markup of the same steps (argument hashes, repeat colours)."""
    return Table(
        name="steps",
        caption="Every call of the run: tokens by type, cost, context and tool calls (repeats marked ↻)",
        columns=[
            Column("Call"),
            Column("Step"),
            Column("Time (UTC)", "datetime"),
            Column("Provider"),
            Column("Model"),
            Column("Prompt version"),
            *(Column(figures.TOKEN_TYPE_LABELS[name], "count") for name in TOKEN_TYPES),
            Column("Cost", "usd_exact"),
            Column("So far", "usd_exact"),
            Column("Context", "count"),
            Column("Cache hit", "percent"),
            Column("Tool calls"),
            Column("Repeated tool calls", "count"),
            Column("Latency (ms)", "count"),
            Column("Status"),
        ],
        rows=[
            [
                step.position,
                step.step,
                step.timestamp,
                step.provider,
                step.model,
                step.prompt_version,
                *(step.tokens[name] for name in TOKEN_TYPES),
                step.cost_usd,
                step.cumulative_cost_usd,
                step.context_tokens,
                step.cache_hit_rate,
                ", ".join(("↻ " if call.repeat else "") + call.name for call in step.tool_calls),
                sum(call.repeat for call in step.tool_calls),
                step.latency_ms,
                step.status,
            ]
            for step in trace.steps
        ],
    )


@login_required
@require_GET
def task_trace_page(request, task_pk: int):
    task = get_object_or_404(Task.objects.restrict(request.user).select_related("team", "agent"), pk=task_pk)
    trace = task_trace(task=task)
    charts = {}
    if trace.steps:
        charts = {"context": figures.trace_context_chart(trace), "cost": figures.trace_cost_chart(trace)}
    return render_page(
        request,
        "dashboard/task_trace.html",
        {
            "task": task,
            "agent": task.agent,
            "trace": trace,
            "charts": charts,
            "steps": steps_table(trace),
            "token_types": [figures.TOKEN_TYPE_LABELS[name] for name in TOKEN_TYPES],
            "token_names": TOKEN_TYPES,
        },
        page=f"task-{task.pk}",
    )
