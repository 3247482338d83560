"""POST /api/v1/tasks: idempotent on (team, task_id), later reports update, events before or after."""

from __future__ import annotations

import json

import pytest

from finops.accounts.models import Team
from finops.ledger.models import Agent, Task
from tests.factories import TeamFactory


def outcome(**overrides) -> dict:
    body = {
        "task_id": "run-1",
        "team": "support",
        "agent": "triage",
        "status": "success",
        "started_at": "2026-11-02T10:00:00Z",
        "ended_at": "2026-11-02T10:05:00Z",
    }
    body.update(overrides)
    return body


def call(event_id: str, **overrides) -> dict:
    body = {
        "event_id": event_id,
        "timestamp": "2026-11-02T10:01:00Z",
        "team": "support",
        "agent": "triage",
        "task_id": "run-1",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"uncached_input": 100, "output": 10},
    }
    body.update(overrides)
    return body


def test_outcome_before_and_after_events_meet_in_one_task(api):
    api.post("/api/v1/events", [call("before")])
    assert api.post(
        "/api/v1/tasks", [outcome(ideal_steps=2, task_type="triage", tags={"tier": "gold"})]
    ).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    api.post("/api/v1/events", [call("after")])

    task = Task.objects.get(task_id="run-1")
    assert task.steps == 2
    assert task.output == 20
    assert (task.status, task.ideal_steps, task.task_type, task.tags) == (
        "success",
        2,
        "triage",
        {"tier": "gold"},
    )


def test_a_later_report_updates_the_task(api):
    api.post("/api/v1/tasks", [outcome(status="failure")])
    api.post("/api/v1/tasks", [outcome(status="success", ended_at="2026-11-02T10:09:00Z")])

    task = Task.objects.get(task_id="run-1")
    assert task.status == "success"
    assert task.ended_at.minute == 9
    assert Task.objects.count() == 1


def test_bad_outcomes_are_rejected_one_by_one(api):
    body = api.post(
        "/api/v1/tasks",
        [
            outcome(task_id="ok"),
            outcome(task_id="bad-status", status="done"),
            outcome(task_id="backwards", ended_at="2026-11-02T09:00:00Z"),
        ],
    ).json()
    assert body["accepted"] == 1
    errors = {row["task_id"]: row["errors"] for row in body["rejected"]}
    assert set(errors) == {"bad-status", "backwards"}
    assert "status" in errors["bad-status"]
    assert "ended_at" in errors["backwards"]
    assert list(Task.objects.values_list("task_id", flat=True)) == ["ok"]


def test_a_later_report_without_optional_fields_keeps_them_and_the_last_report_in_a_batch_wins(api):
    api.post("/api/v1/tasks", [outcome(ideal_steps=5, task_type="triage")])
    api.post("/api/v1/tasks", [outcome(status="failure"), outcome(status="abandoned")])

    task = Task.objects.get(task_id="run-1")
    assert (task.status, task.ideal_steps, task.task_type) == ("abandoned", 5, "triage")


def test_a_task_the_database_cannot_hold_is_rejected_and_the_rest_of_the_batch_kept(api):
    response = api.post(
        "/api/v1/tasks",
        [
            outcome(task_id="nul-tag", tags={"note": "a\x00b"}),
            outcome(task_id="too-many-steps", ideal_steps=2**31),
            outcome(task_id="good", tags={"escaped": "\\u0000 is fine as text"}),
        ],
    )

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(entry["index"], list(entry["errors"])) for entry in body["rejected"]] == [
        (0, ["tags"]),
        (1, ["ideal_steps"]),
    ]
    assert list(Task.objects.values_list("task_id", flat=True)) == ["good"]


def test_a_lone_surrogate_or_nul_anywhere_in_a_tasks_tags_rejects_that_task_only(api):
    bad_tags = {
        "surrogate-value": {"note": "\ud800"},
        "surrogate-key": {"\udfff": "x"},
        "nul-key": {"a\x00": 1},
        "nested-surrogate": {"deep": [{"deeper": ["ok", "\ud83d"]}]},
        "nested-nul": {"deep": {"deeper": ["a\x00b"]}},
    }
    batch = [outcome(task_id="good-1")]
    batch += [outcome(task_id=task_id, tags=tags) for task_id, tags in bad_tags.items()]
    batch += [outcome(task_id="good-2", tags={"emoji": "\U0001f600"})]

    body = api.post("/api/v1/tasks", json.dumps(batch)).json()  # ensure_ascii: surrogates as \u escapes

    assert body["accepted"] == 2
    assert [(entry["task_id"], list(entry["errors"])) for entry in body["rejected"]] == [
        (task_id, ["tags"]) for task_id in bad_tags
    ]
    assert sorted(Task.objects.values_list("task_id", flat=True)) == ["good-1", "good-2"]


def test_tags_nested_past_the_limit_reject_the_task_naming_the_limit(api):
    deep = nested = {}
    for _ in range(64):
        nested["a"] = nested = {}
    body = api.post("/api/v1/tasks", [outcome(task_id="deep", tags=deep), outcome(task_id="ok")]).json()

    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 0,
            "task_id": "deep",
            "errors": {"tags": ["nested 65 levels deep; JSON values may nest at most 64 levels"]},
        }
    ]


def test_task_times_follow_the_event_timestamp_range_and_team_names_must_be_slugs(api):
    body = api.post(
        "/api/v1/tasks",
        [
            outcome(task_id="far-future", ended_at="9999-12-31T23:59:59Z"),
            outcome(task_id="too-early", started_at="2019-12-31T23:59:59Z"),
            outcome(task_id="not-a-slug", team="Support Team"),
            None,
            outcome(task_id="ok"),
        ],
    ).json()

    assert body["accepted"] == 1
    errors = {entry["index"]: entry["errors"] for entry in body["rejected"]}
    assert errors == {
        0: {"ended_at": ["9999-12-31T23:59:59+00:00 is more than a day in the future; check the clock"]},
        1: {"started_at": ["2019-12-31T23:59:59+00:00 is before 2020; check the clock or the unit"]},
        2: {"team": ["'Support Team' is not a valid team name: use letters, digits, - and _"]},
        3: {"non_field_errors": ["null, not a task outcome object"]},
    }
    assert list(Task.objects.values_list("task_id", flat=True)) == ["ok"]
    assert not Team.objects.filter(slug="Support Team").exists()


@pytest.mark.parametrize("size", [10, 200])
def test_a_batch_resolves_its_teams_and_agents_in_a_constant_number_of_queries(
    api, django_assert_max_num_queries, size
):
    TeamFactory(slug="support")
    TeamFactory(slug="billing")
    batch = [
        outcome(task_id=f"run-{number}", team=("support", "billing")[number % 2], agent=f"agent-{number}")
        for number in range(size)
    ]
    with django_assert_max_num_queries(QUERIES_PER_BATCH):
        body = api.post("/api/v1/tasks", batch).json()

    assert body == {"accepted": size, "duplicates": 0, "rejected": []}
    assert Agent.objects.count() == size
    task = Task.objects.select_related("agent", "team").get(task_id="run-7")
    assert (task.team.slug, task.agent.name, task.agent.team_id) == ("billing", "agent-7", task.team_id)


# the token's lookup and last use; team and agent lookup; agents insert and their ids; in a savepoint, the
# tasks already killed (a kill stands) and the tasks upsert (measured 9 for 10 and for 200 outcomes; one
# per outcome and agent before)
QUERIES_PER_BATCH = 9
