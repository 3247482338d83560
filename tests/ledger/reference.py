"""An independent reference model of SPEC.md's cost and KPI definitions, for tests to compare against.

Rates are the providers' published list prices per MTok (Anthropic and OpenAI pricing pages), typed in
here by hand rather than read from genai-prices, so a mistake in our catalog mapping shows up.
Only used with calls under 200k input tokens (no long-context tier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

PUBLISHED_RATES = {
    # uncached input, cache read, 5m cache write, 1h cache write, output, reasoning (billed as output)
    ("anthropic", "claude-sonnet-4-5"): ("3", "0.30", "3.75", "6", "15", "15"),
    ("anthropic", "claude-haiku-4-5"): ("1", "0.10", "1.25", "2", "5", "5"),
    ("openai", "gpt-4o"): ("2.50", "1.25", "2.50", "2.50", "10", "10"),
    ("openai", "o3"): ("2", "0.50", "2", "2", "8", "8"),
}
TOKEN_TYPES = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")


def reference_cost(event: dict) -> Decimal | None:
    """Cost of one canonical event per SPEC, or None when the model has no published rate here."""
    rates = PUBLISHED_RATES.get((event["provider"], event["model"]))
    if rates is None:
        return None
    total = Decimal(0)
    for token_type, rate in zip(TOKEN_TYPES, rates, strict=True):
        amount = Decimal(event["usage"].get(token_type, 0)) * Decimal(rate) / Decimal(1_000_000)
        if event.get("batch"):
            amount = amount / 2
        total += amount.quantize(Decimal("1e-12"), ROUND_HALF_EVEN)
    return total


@dataclass
class Outcome:
    team: str
    task_id: str
    agent: str
    status: str
    ended_at: datetime
    ideal_steps: int | None


def reference_kpis(
    *,
    events: list[dict],
    outcomes: list[Outcome],
    start: datetime,
    end: datetime,
    agent_ideal: dict[tuple[str, str], int] | None = None,
    team: str | None = None,
    agent: str | None = None,
) -> dict:
    """SPEC.md's KPIs by brute force over the raw events and outcomes."""
    agent_ideal = agent_ideal or {}

    def in_scope(row_team: str, row_agent: str) -> bool:
        return (team is None or row_team == team) and (agent is None or row_agent == agent)

    def ts(event: dict) -> datetime:
        return datetime.fromisoformat(event["timestamp"])

    window_calls = [e for e in events if in_scope(e["team"], e["agent"]) and start <= ts(e) < end]
    tokens = {t: sum(e["usage"].get(t, 0) for e in window_calls) for t in TOKEN_TYPES}
    total_input = sum(tokens[t] for t in TOKEN_TYPES[:4])
    costs = [reference_cost(e) for e in window_calls]
    ended = [o for o in outcomes if in_scope(o.team, o.agent) and start <= o.ended_at < end]
    ended_keys = {(o.team, o.task_id): o for o in ended}
    task_calls: dict[tuple[str, str], list[dict]] = {key: [] for key in ended_keys}
    for event in events:
        key = (event["team"], event.get("task_id"))
        if key in task_calls:
            task_calls[key].append(event)
    successful = [o for o in ended if o.status == "success"]
    task_costs = [reference_cost(e) for calls in task_calls.values() for e in calls]
    task_cost = sum((cost for cost in task_costs if cost is not None), Decimal(0))
    task_unpriced = sum(1 for cost in task_costs if cost is None)
    useful_output = sum(
        e["usage"].get("output", 0) for o in successful for e in task_calls[(o.team, o.task_id)]
    )
    all_tokens = sum(
        sum(e["usage"].get(t, 0) for t in TOKEN_TYPES) for calls in task_calls.values() for e in calls
    )
    actual_steps = ideal_steps = 0
    for outcome in ended:
        ideal = outcome.ideal_steps or agent_ideal.get((outcome.team, outcome.agent))
        if ideal:
            actual_steps += len(task_calls[(outcome.team, outcome.task_id)])
            ideal_steps += ideal
    return {
        "cost_usd": sum((c for c in costs if c is not None), Decimal(0)),
        "calls": len(window_calls),
        "unpriced_calls": sum(1 for c in costs if c is None),
        "calls_not_in_task": sum(1 for e in window_calls if not e.get("task_id")),
        "tokens": tokens,
        "tasks": {
            "ended": len(ended),
            "successful": len(successful),
            "failed": sum(1 for o in ended if o.status == "failure"),
            "abandoned": sum(1 for o in ended if o.status == "abandoned"),
            "killed": sum(1 for o in ended if o.status == "killed"),
            "unpriced_calls": task_unpriced,
        },
        # an unknown cost is never $0: null when none of the tasks' calls has a price
        "cost_per_successful_task_usd": (
            task_cost / len(successful) if successful and (task_cost or not task_unpriced) else None
        ),
        "cache_hit_rate": tokens["cache_read"] / total_input if total_input else None,
        "token_efficiency_index": useful_output / all_tokens if all_tokens else None,
        "step_inflation_ratio": actual_steps / ideal_steps if ideal_steps else None,
    }
