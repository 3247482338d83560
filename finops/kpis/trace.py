"""One agent run, step by step (issue 9, "Task trace"): what each call sent and cost, how the context
grew, and which tool calls repeated. Read from the task's own calls, found through the timestamp range
the writer keeps on the task (first_call_at..last_call_at, the calls table's BRIN index): no index on
task_id is needed, and the writer pays for none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from finops.ledger.models import Call, Task
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES

MAX_TRACE_STEPS = 5_000  # a runaway loop can make more; the page says how many it leaves out


@dataclass(frozen=True)
class ToolCall:
    name: str
    args_hash: str | None
    repeat: bool  # the same tool with the same arguments hash as an earlier call of this run


@dataclass(frozen=True)
class TraceStep:
    position: int  # 1-based, in the order the calls were made
    step: int | None  # as reported by the agent
    timestamp: datetime
    provider: str
    model: str
    prompt_version: str | None
    tokens: dict[str, int]
    cost_usd: Decimal | None  # None: unpriced
    cumulative_cost_usd: Decimal  # priced calls so far
    context_tokens: int  # input tokens of all four input types: what the call sent
    cumulative_context_tokens: int
    compacted_cumulative_tokens: int  # had the context stayed at the first call's size
    tool_calls: tuple[ToolCall, ...]
    latency_ms: int | None
    status: str

    @property
    def cache_hit_rate(self) -> float | None:
        return self.tokens["cache_read"] / self.context_tokens if self.context_tokens else None

    @property
    def repeats(self) -> int:
        return sum(call.repeat for call in self.tool_calls)


@dataclass(frozen=True)
class TaskTrace:
    task: Task
    steps: list[TraceStep] = field(default_factory=list)
    left_out: int = 0  # calls past MAX_TRACE_STEPS

    @property
    def repeated_tool_calls(self) -> int:
        return sum(step.repeats for step in self.steps)

    @property
    def unpriced_calls(self) -> int:
        return sum(step.cost_usd is None for step in self.steps)


def _tool_calls(raw, seen: set[tuple[str, str | None]]) -> tuple[ToolCall, ...]:
    calls = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        args_hash = item.get("args_hash") if isinstance(item.get("args_hash"), str) else None
        key = (item["name"], args_hash)
        calls.append(ToolCall(name=item["name"], args_hash=args_hash, repeat=key in seen))
        seen.add(key)
    return tuple(calls)


def task_trace(*, task: Task) -> TaskTrace:
    """The task's calls in order (reported step, then time). The caller has restricted `task`."""
    if task.first_call_at is None:
        return TaskTrace(task=task)
    calls = (
        Call.objects.filter(
            team_id=task.team_id,
            task_id=task.task_id,
            timestamp__gte=task.first_call_at,
            timestamp__lte=task.last_call_at,
        )
        .order_by("step", "timestamp", "id")  # a null step sorts last, as PostgreSQL sorts nulls
        .values_list(
            "step",
            "timestamp",
            "provider",
            "model",
            "prompt_version",
            *TOKEN_TYPES,
            "cost_usd",
            "tool_calls",
            "latency_ms",
            "status",
        )
    )
    rows = list(calls[: MAX_TRACE_STEPS + 1])
    left_out = 0
    if len(rows) > MAX_TRACE_STEPS:
        left_out = calls.count() - MAX_TRACE_STEPS
        rows = rows[:MAX_TRACE_STEPS]
    steps, seen = [], set()
    cumulative_cost, cumulative_context, first_context = Decimal(0), 0, None
    for position, row in enumerate(rows, start=1):
        step, timestamp, provider, model, prompt_version = row[:5]
        tokens = dict(zip(TOKEN_TYPES, row[5 : 5 + len(TOKEN_TYPES)], strict=True))
        cost, tool_calls, latency_ms, status = row[5 + len(TOKEN_TYPES) :]
        context = sum(tokens[name] for name in INPUT_TOKEN_TYPES)
        first_context = context if first_context is None else first_context
        cumulative_cost += cost or 0
        cumulative_context += context
        steps.append(
            TraceStep(
                position=position,
                step=step,
                timestamp=timestamp,
                provider=provider,
                model=model,
                prompt_version=prompt_version,
                tokens=tokens,
                cost_usd=cost,
                cumulative_cost_usd=cumulative_cost,
                context_tokens=context,
                cumulative_context_tokens=cumulative_context,
                compacted_cumulative_tokens=first_context * position,
                tool_calls=_tool_calls(tool_calls, seen),
                latency_ms=latency_ms,
                status=status,
            )
        )
    return TaskTrace(task=task, steps=steps, left_out=left_out)
