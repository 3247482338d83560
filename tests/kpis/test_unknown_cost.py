"""An unknown cost is never shown as $0: tasks whose calls are all unpriced have no $/successful task."""

from __future__ import annotations

from decimal import Decimal

from tests.ledger.reference import reference_cost


def call(event_id: str, task_id: str, model: str, provider: str) -> dict:
    return {
        "event_id": event_id,
        "timestamp": "2026-11-02T10:00:00Z",
        "team": "research",
        "agent": "extractor",
        "task_id": task_id,
        "provider": provider,
        "model": model,
        "usage": {"uncached_input": 4000, "output": 100},
    }


def outcome(task_id: str) -> dict:
    return {
        "task_id": task_id,
        "team": "research",
        "agent": "extractor",
        "status": "success",
        "started_at": "2026-11-02T09:59:00Z",
        "ended_at": "2026-11-02T10:01:00Z",
    }


WINDOW = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z", "team": "research"}


def test_all_unpriced_tasks_give_null_not_zero(api):
    api.post(
        "/api/v1/events", [call("a1", "t1", "acme-large-2", "acme"), call("a2", "t1", "acme-large-2", "acme")]
    )
    api.post("/api/v1/tasks", [outcome("t1")])

    body = api.get("/api/v1/kpis", **WINDOW).json()

    assert body["tasks"]["successful"] == 1
    assert body["tasks"]["unpriced_calls"] == 2
    assert body["cost_per_successful_task_usd"] is None


def test_partly_unpriced_tasks_count_their_priced_calls_and_say_how_many_are_left_out(api):
    priced = call("p1", "t2", "gpt-4o", "openai")
    api.post("/api/v1/events", [priced, call("u1", "t2", "acme-large-2", "acme")])
    api.post("/api/v1/tasks", [outcome("t2")])

    body = api.get("/api/v1/kpis", **WINDOW).json()

    assert body["tasks"]["unpriced_calls"] == 1
    assert Decimal(body["cost_per_successful_task_usd"]) == reference_cost(priced).quantize(Decimal("1e-6"))
