"""Two writers delivering the same events at the same time count each event once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from finops.ledger.models import Call, DailyRollup, Task
from ingest.writer import events_ingest


def batch(count: int) -> list[dict]:
    return [
        {
            "event_id": f"e-{number}",
            "timestamp": f"2026-11-0{1 + number % 3}T12:00:00Z",
            "team": "support",
            "agent": "triage",
            "task_id": f"run-{number % 7}",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"uncached_input": 1000 + number, "output": 50},
        }
        for number in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_batches_count_once():
    events = batch(400)
    events_ingest(raw_events=events[:1], principal=None, source="test")  # team and agent exist first
    results = []
    barrier = threading.Barrier(3)

    def deliver(rows):
        try:
            barrier.wait()
            results.append(events_ingest(raw_events=rows, principal=None, source="test"))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=deliver, args=(events,)),
        threading.Thread(target=deliver, args=(list(reversed(events)),)),
        threading.Thread(target=deliver, args=(events[100:300],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(result.accepted for result in results) == 399
    assert sum(result.accepted + result.duplicates for result in results) == 1000
    assert Call.objects.count() == 400
    assert sum(DailyRollup.objects.values_list("calls", flat=True)) == 400
    assert sum(DailyRollup.objects.values_list("uncached_input", flat=True)) == sum(
        row["usage"]["uncached_input"] for row in events
    )
    assert sum(Task.objects.values_list("steps", flat=True)) == 400
