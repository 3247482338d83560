"""POST /api/v1/tasks: idempotent on (team, task_id), later reports update, events before or after."""

from __future__ import annotations

from finops.ledger.models import Task


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
