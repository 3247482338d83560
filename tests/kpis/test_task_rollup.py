"""The per-day task rollups stay exact whatever order a task's calls and outcome arrive in (issue 9,
"Speed at 10M calls"): after every scenario the rollup rows equal a brute-force grouping of the raw
tasks, and the task KPIs of windows (whole days from the rollup, ragged edges from the tasks) equal
SPEC's definitions computed from the raw events and the outcome that stands last."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from finops.guardrails.services import task_kill
from finops.kpis.agents import agent_report
from finops.ledger.models import Agent, Task, TaskDailyRollup
from finops.ledger.services import calls_reprice
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.models import ModelPriceOverride
from finops.pricing.services import PriceBook
from tests.ledger.reference import Outcome, reference_kpis

BEGIN = datetime(2026, 10, 5, 22, tzinfo=UTC)  # tasks straddle UTC midnights
AGENTS = [("support", "triage"), ("support", "refunds"), ("coding", "reviewer")]
WINDOWS = [
    (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),  # whole days only
    (datetime(2026, 10, 6, 3, 15, tzinfo=UTC), datetime(2026, 10, 9, 11, 0, tzinfo=UTC)),  # ragged edges
    (datetime(2026, 10, 7, 1, 0, tzinfo=UTC), datetime(2026, 10, 7, 23, 0, tzinfo=UTC)),  # no whole day
]


def task_events(number: int, *, team: str, agent: str, steps: int, model: str = "claude-sonnet-4-5") -> list:
    start = BEGIN + timedelta(hours=7 * number)
    return [
        {
            "event_id": f"{team}:{number}:{step}",
            "timestamp": (start + timedelta(minutes=50 * step)).isoformat(),
            "team": team,
            "agent": agent,
            "task_id": f"run-{number}",
            "step": step,
            "provider": "anthropic" if model.startswith("claude") else "acme",
            "model": model,
            "usage": {
                "uncached_input": 1000 * step + number,
                "cache_read": 700 * step,
                "cache_write_5m": 300 if step == 1 else 0,
                "output": 40 + 13 * number + step,
                "reasoning": 5 * number,
            },
        }
        for step in range(1, steps + 1)
    ]


def outcome_body(outcome: Outcome) -> dict:
    return {
        "task_id": outcome.task_id,
        "team": outcome.team,
        "agent": outcome.agent,
        "status": outcome.status,
        "started_at": (outcome.ended_at - timedelta(hours=9)).isoformat(),
        "ended_at": outcome.ended_at.isoformat(),
        **({"ideal_steps": outcome.ideal_steps} if outcome.ideal_steps else {}),
    }


class Ledger:
    """Sends a task's calls and outcomes through the API, remembering what the references need."""

    def __init__(self, api) -> None:
        self.api = api
        self.events: list[dict] = []
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    def calls(self, events: list[dict]) -> None:
        response = self.api.post("/api/v1/events", events)
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == len(events)
        self.events += events

    def outcome(self, outcome: Outcome) -> None:
        assert self.api.post("/api/v1/tasks", [outcome_body(outcome)]).status_code == 200
        self.outcomes[(outcome.team, outcome.task_id)] = outcome


def rollup_rows() -> dict:
    fields = [f.name for f in TaskDailyRollup._meta.fields if f.name not in ("id", "day", "team", "agent")]
    return {
        (row["team_id"], row["agent_id"], row["day"]): tuple(row[name] for name in fields)
        for row in TaskDailyRollup.objects.values("team_id", "agent_id", "day", *fields)
        if any(row[name] for name in fields)  # a row every task has left again is all zeros
    }


def rollup_brute_force() -> dict:
    """The rollup rows grouped from the raw tasks, one by one in Python."""
    sums: dict[tuple, list] = defaultdict(lambda: [0] * 5 + [Decimal(0)] + [0] * 7)
    for task in Task.objects.filter(status__isnull=False, ended_at__isnull=False):
        row = sums[(task.team_id, task.agent_id, task.ended_at.astimezone(UTC).date())]
        tokens = sum(getattr(task, name) for name in TOKEN_TYPES)
        statuses = ("success", "failure", "abandoned", "killed")
        changes = [
            1,
            *(int(task.status == status) for status in statuses),
            task.cost_usd,
            task.unpriced_calls,
        ]
        changes += [task.output if task.status == "success" else 0, tokens]
        known = task.ideal_steps is not None
        changes += [
            task.steps if known else 0,
            task.ideal_steps or 0,
            0 if known else task.steps,
            int(not known),
        ]
        for index, change in enumerate(changes):
            row[index] += change
    return {key: tuple(values) for key, values in sums.items()}


def agent_days_brute_force(agent: Agent, start: datetime, end: datetime) -> list[tuple]:
    days: dict = defaultdict(lambda: [0, 0, Decimal(0)])
    for task in Task.objects.filter(agent=agent, status__isnull=False, ended_at__gte=start, ended_at__lt=end):
        row = days[task.ended_at.astimezone(UTC).date()]
        row[0] += 1
        row[1] += task.status == "success"
        row[2] += task.cost_usd
    return [(day, *sums) for day, sums in sorted(days.items())]


def assert_exact(ledger: Ledger, agent_ideal: dict | None = None) -> None:
    assert rollup_rows() == rollup_brute_force()
    assert rollup_rows(), "the scenario ended tasks: the comparison means something"
    for start, end in WINDOWS:
        for agent in Agent.objects.all():  # the agent page's runs per day: rollup days and edges
            days = agent_report(agent=agent, start=start, end=end).days
            got = [(day.day, day.tasks, day.successful, day.cost_usd) for day in days]
            assert got == agent_days_brute_force(agent, start, end), (agent.name, start, end)
        for team, agent in [(None, None), ("support", None), ("support", "triage")]:
            expected = reference_kpis(
                events=ledger.events,
                outcomes=list(ledger.outcomes.values()),
                start=start,
                end=end,
                agent_ideal=agent_ideal,
                team=team,
                agent=agent,
            )
            params = {"start": start.isoformat(), "end": end.isoformat()}
            params |= {"team": team} if team else {}
            params |= {"agent": agent} if agent else {}
            body = ledger.api.get("/api/v1/kpis", **params).json()
            assert body["tasks"] == expected["tasks"], (start, end, team, agent)
            for ratio in ("token_efficiency_index", "step_inflation_ratio"):
                if expected[ratio] is None:
                    assert body[ratio] is None, ratio
                else:
                    assert body[ratio] == pytest.approx(expected[ratio], abs=1e-6), ratio
            cost = expected["cost_per_successful_task_usd"]
            assert body["cost_per_successful_task_usd"] == (
                None if cost is None else str(cost.quantize(Decimal("0.000001")))
            )


def outcomes_for(events_by_task: dict, *, status_of) -> dict:
    """An outcome per task, ending an hour after its last call (some on the next UTC day)."""
    outcomes = {}
    for number, events in events_by_task.items():
        last = datetime.fromisoformat(events[-1]["timestamp"])
        outcomes[number] = Outcome(
            team=events[0]["team"],
            task_id=f"run-{number}",
            agent=events[0]["agent"],
            status=status_of(number),
            ended_at=last + timedelta(hours=1),
            ideal_steps=(None, 3, None, 5)[number % 4],
        )
    return outcomes


def traffic() -> dict[int, list[dict]]:
    return {
        number: task_events(number, team=team, agent=agent, steps=2 + number % 5)
        for number, (team, agent) in enumerate(AGENTS * 4)
    }


STATUSES = ("success", "failure", "success", "abandoned", "killed")


@pytest.mark.parametrize("order", ["calls_first", "outcome_first", "interleaved"])
def test_rollup_is_exact_whatever_order_calls_and_outcomes_arrive_in(api, order):
    ledger = Ledger(api)
    tasks = traffic()
    outcomes = outcomes_for(tasks, status_of=lambda number: STATUSES[number % 5])
    for number, events in tasks.items():
        if order == "calls_first":
            ledger.calls(events)
            ledger.outcome(outcomes[number])
        elif order == "outcome_first":
            ledger.outcome(outcomes[number])
            ledger.calls(events)
        else:  # a call before the outcome, the others after it, one batch of them re-sent
            ledger.calls(events[:1])
            ledger.outcome(outcomes[number])
            ledger.calls(events[1:])
            assert api.post("/api/v1/events", events).json()["accepted"] == 0
    assert_exact(ledger)


def test_rollup_follows_an_outcome_re_sent_changed(api):
    ledger = Ledger(api)
    tasks = traffic()
    first = outcomes_for(tasks, status_of=lambda number: "success")
    for number, events in tasks.items():
        ledger.calls(events[:2])
        ledger.outcome(first[number])
    assert_exact(ledger)
    for number, events in tasks.items():
        outcome = first[number]
        if number % 3 == 0:  # success → failure
            outcome = replace(outcome, status="failure")
        if number % 3 == 1:  # ends two days later, another UTC day, naming its ideal steps
            outcome = replace(outcome, ended_at=outcome.ended_at + timedelta(days=2), ideal_steps=7)
        if number % 4 == 2 and outcome.team == "support":  # another agent of the team takes it over
            outcome = replace(outcome, agent="refunds" if outcome.agent == "triage" else "triage")
        ledger.outcome(outcome)
        if events[2:]:
            ledger.calls(events[2:])
    assert_exact(ledger)


def test_rollup_follows_the_kill_switch_repricing_and_the_agents_ideal_steps(api):
    ledger = Ledger(api)
    tasks = {
        number: task_events(
            number, team=team, agent=agent, steps=3, model=("acme-large-2", "claude-sonnet-4-5")[number % 2]
        )
        for number, (team, agent) in enumerate(AGENTS * 2)
    }
    outcomes = outcomes_for(tasks, status_of=lambda number: "success")
    for number, events in tasks.items():
        ledger.calls(events)
        if number != 4:
            ledger.outcome(outcomes[number])
    # killed: one already ended (keeps its end), one still running (ends now, outside every window)
    support = Task.objects.get(team__slug="support", task_id="run-0").team_id
    task_kill(team_id=support, task_id="run-0")
    ledger.outcomes[("support", "run-0")] = replace(outcomes[0], status="killed")
    task_kill(team_id=Task.objects.get(task_id="run-4").team_id, task_id="run-4")
    assert_exact(ledger)
    # an outcome re-sent for a killed task: it stays killed, and ends when the outcome says
    later = replace(outcomes[0], ended_at=outcomes[0].ended_at + timedelta(days=1))
    ledger.outcome(later)
    ledger.outcomes[("support", "run-0")] = replace(later, status="killed")
    assert_exact(ledger)
    # the agents' own ideal steps change after the fact: the KPIs take the value they have now
    Agent.objects.filter(name="triage").update(ideal_steps=4)
    Agent.objects.filter(name="reviewer").update(ideal_steps=2)
    assert_exact(ledger, agent_ideal={("support", "triage"): 4, ("coding", "reviewer"): 2})
    # the unpriced model gets a price: the tasks' cost moves into the rollup (the reference knows
    # published prices only, so the rows are compared with the tasks)
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("2"),
        output_per_mtok=Decimal("8"),
    )
    unpriced = sum(TaskDailyRollup.objects.values_list("unpriced_calls", flat=True))
    assert unpriced > 0
    assert calls_reprice(price_book=PriceBook.load(), provider="acme", model="acme-large-2") > 0
    assert rollup_rows() == rollup_brute_force()
    assert sum(TaskDailyRollup.objects.values_list("unpriced_calls", flat=True)) == 0


def test_deleting_tasks_or_their_agent_leaves_the_rollup_exact(api):
    ledger = Ledger(api)
    tasks = traffic()
    outcomes = outcomes_for(tasks, status_of=lambda number: STATUSES[number % 5])
    for number, events in tasks.items():
        ledger.calls(events)
        ledger.outcome(outcomes[number])
    Task.objects.filter(task_id__in=["run-1", "run-4"], team__slug="support").delete()
    reviewer = Agent.objects.get(name="reviewer").pk
    Agent.objects.get(pk=reviewer).delete()  # its tasks and rollup rows go, in the ORM's order
    assert not TaskDailyRollup.objects.filter(agent_id=reviewer).exists()
    assert rollup_rows() == rollup_brute_force()
    assert rollup_rows()
