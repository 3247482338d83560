"""`finops gate`: exit codes for release pipelines, from the same KPI reader as the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from finops.accounts.models import Team
from finops.ledger.models import Agent
from finops.ledger.services import task_outcomes_record
from ingest.writer import events_ingest
from tests.cli.conftest import run_command
from tests.pricing.published import published_cost

USAGE = {"uncached_input": 10_000, "output": 1000}  # $0.045 on claude-sonnet-4-5
CALL_COST = published_cost(provider="anthropic", model="claude-sonnet-4-5", tokens=USAGE)


def run_task(
    *,
    team: str,
    agent: str,
    task_id: str,
    status: str,
    steps: int,
    ended_ago: timedelta,
    model: str = "claude-sonnet-4-5",
) -> None:
    ended = datetime.now(UTC) - ended_ago
    events = [
        {
            "event_id": f"{task_id}:{step}",
            "timestamp": (ended - timedelta(minutes=steps - step + 1)).isoformat(),
            "team": team,
            "agent": agent,
            "task_id": task_id,
            "step": step,
            "provider": "anthropic",
            "model": model,
            "usage": USAGE,
        }
        for step in range(1, steps + 1)
    ]
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == steps
    team_object = Team.objects.get(slug=team)
    task_outcomes_record(
        outcomes=[
            {
                "team": team_object,
                "agent": Agent.objects.get(team=team_object, name=agent),
                "task_id": task_id,
                "status": status,
                "started_at": ended - timedelta(minutes=steps + 1),
                "ended_at": ended,
            }
        ]
    )


@pytest.fixture
def triage_runs(db) -> Decimal:
    """Two successful runs and one failed one in the last day; returns the expected $/successful task."""
    run_task(
        team="support",
        agent="triage",
        task_id="run-1",
        status="success",
        steps=2,
        ended_ago=timedelta(hours=2),
    )
    run_task(
        team="support",
        agent="triage",
        task_id="run-2",
        status="success",
        steps=3,
        ended_ago=timedelta(hours=3),
    )
    run_task(
        team="support",
        agent="triage",
        task_id="run-3",
        status="failure",
        steps=1,
        ended_ago=timedelta(hours=4),
    )
    # long ago: outside --since 1d, must not count
    run_task(
        team="support",
        agent="triage",
        task_id="run-0",
        status="failure",
        steps=9,
        ended_ago=timedelta(days=3),
    )
    return CALL_COST * 6 / 2  # every call of the tasks, successful or not, over the successful ones


def test_within_budget_passes(triage_runs):
    ran = run_command("gate", "--agent", "triage", "--budget-per-task", str(triage_runs))

    assert ran.exit_code == 0
    assert f"${triage_runs.quantize(Decimal('0.000001'))}" in ran.stdout
    assert "PASS" in ran.stdout


def test_over_budget_but_within_tolerance_passes_and_beyond_it_fails(triage_runs):
    # cost = 0.135: budget 0.1125 × 1.2 = 0.135 exactly is still within; a hair lower budget fails
    assert triage_runs == Decimal("0.135")
    assert run_command("gate", "--agent", "triage", "--budget-per-task", "0.1125").exit_code == 0
    failed = run_command("gate", "--agent", "triage", "--budget-per-task", "0.1124")
    assert failed.exit_code == 1
    assert "FAIL" in failed.stdout
    assert (
        run_command("gate", "--agent", "triage", "--budget-per-task", "0.1125", "--tolerance", "0").exit_code
        == 1
    )


def test_window_only_counts_tasks_that_ended_in_it(triage_runs):
    # over the last 5 days the 9-step failed run counts too: 15 calls over 2 successful tasks
    ran = run_command(
        "gate",
        "--agent",
        "triage",
        "--since",
        "5d",
        "--budget-per-task",
        str(CALL_COST * 15 / 2),
        "--tolerance",
        "0",
    )
    assert ran.exit_code == 0
    assert (
        run_command(
            "gate",
            "--agent",
            "triage",
            "--since",
            "5d",
            "--budget-per-task",
            str(triage_runs),
            "--tolerance",
            "0",
        ).exit_code
        == 1
    )


def test_no_successful_task_passes_unless_required(db):
    run_task(
        team="support",
        agent="triage",
        task_id="run-9",
        status="failure",
        steps=2,
        ended_ago=timedelta(hours=1),
    )

    ran = run_command("gate", "--agent", "triage", "--budget-per-task", "0.01")
    assert ran.exit_code == 0
    assert "no successful task" in ran.stdout
    assert (
        run_command(
            "gate", "--agent", "triage", "--budget-per-task", "0.01", "--require-successful-tasks"
        ).exit_code
        == 1
    )


def test_an_unknown_cost_fails_the_gate_and_is_not_called_no_data(db):
    run_task(
        team="support",
        agent="triage",
        task_id="run-new-model",
        status="success",
        steps=2,
        ended_ago=timedelta(hours=1),
        model="acme-unreleased-9",
    )

    ran = run_command("gate", "--agent", "triage", "--budget-per-task", "0.01")

    assert ran.exit_code == 1
    assert "no successful task" not in ran.stdout
    assert "cost unknown" in ran.stdout and "2 calls" in ran.stdout


def test_an_agent_name_in_several_teams_needs_a_team(db):
    run_task(
        team="support", agent="triage", task_id="a", status="success", steps=1, ended_ago=timedelta(hours=1)
    )
    run_task(
        team="billing", agent="triage", task_id="b", status="success", steps=4, ended_ago=timedelta(hours=1)
    )

    with pytest.raises(CommandError, match=r"several teams \(billing, support\).*--team") as error:
        run_command("gate", "--agent", "triage", "--budget-per-task", "1")
    assert error.value.returncode == 2
    assert (
        run_command(
            "gate", "--agent", "triage", "--team", "support", "--budget-per-task", str(CALL_COST)
        ).exit_code
        == 0
    )
    assert (
        run_command(
            "gate", "--agent", "triage", "--team", "billing", "--budget-per-task", str(CALL_COST)
        ).exit_code
        == 1
    )
    with pytest.raises(CommandError, match="no agent named 'nobody'"):
        run_command("gate", "--agent", "nobody", "--budget-per-task", "1")


def test_gate_as_a_real_process(transactional_db, finops_process):
    run_task(
        team="support",
        agent="triage",
        task_id="run-1",
        status="success",
        steps=2,
        ended_ago=timedelta(hours=2),
    )

    within = finops_process("gate", "--agent", "triage", "--budget-per-task", str(CALL_COST * 2))
    over = finops_process(
        "gate", "--agent", "triage", "--budget-per-task", str(CALL_COST), "--tolerance", "0.5"
    )
    bad = finops_process("gate", "--agent", "nobody", "--budget-per-task", "1")

    assert within.returncode == 0, within.stdout + within.stderr
    assert over.returncode == 1, over.stdout + over.stderr
    assert bad.returncode == 2
    assert "no agent named 'nobody'" in bad.stderr
