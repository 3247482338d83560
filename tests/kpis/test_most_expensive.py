"""The costliest runs of a window (read apart, ended and running, each by an index, then merged) are the
ones a brute-force sort of every task gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from finops.kpis.selectors import Scope, tasks_most_expensive
from finops.ledger.models import Task
from tests.kpis.test_task_rollup import Ledger, outcomes_for, task_events

WINDOWS = [
    (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 9, tzinfo=UTC)),
    (datetime(2026, 10, 6, 9, tzinfo=UTC), datetime(2026, 10, 7, 3, tzinfo=UTC)),
    (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
@pytest.mark.parametrize("limit", [1, 3, 10])
def test_the_costliest_runs_of_a_window_ended_or_running(api, start, end, limit):
    ledger = Ledger(api)
    tasks = {
        number: task_events(
            number, team="support", agent=("triage", "refunds")[number % 2], steps=1 + number % 6
        )
        for number in range(14)
    }
    outcomes = outcomes_for(tasks, status_of=lambda number: "success")
    for number, events in tasks.items():
        ledger.calls(events)
        if number % 4:  # a quarter of them still running
            ledger.outcome(outcomes[number])
    support = Task.objects.filter(team__slug="support").values_list("team_id", flat=True)[0]
    for scope in (Scope(team_ids=None), Scope(team_ids=frozenset({support}))):
        expected = sorted(
            (task for task in Task.objects.all() if task.last_call_at >= start and task.first_call_at < end),
            key=lambda task: (-task.cost_usd, task.pk),
        )[:limit]
        got = tasks_most_expensive(scope=scope, start=start, end=end, limit=limit)
        assert [task.pk for task in got] == [task.pk for task in expected]
        if limit == 10 and start.month == 9:  # the whole ledger: the merge had both kinds to take
            assert {task.status is None for task in expected} == {True, False}
