"""Monthly partitions of ledger_call are created without deadlock by writers that need overlapping months.

A file in time order makes consecutive batches share the month at their boundary, so the two writer
threads of a file import create partitions at the same time; before one lock ordered every creation,
this import failed with `deadlock detected` in its first round."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

import ingest.writer as writer
from finops.ledger import services
from finops.ledger.models import Call, EventKey
from ingest.imports import file_import

YEAR = 2025
EVENTS = 6_000
BATCH_SIZE = 700  # 1.4 months a batch: consecutive batches need the month at their boundary
ROUNDS = 5


def write_time_ordered_events(path) -> None:
    start = datetime(YEAR, 1, 1, tzinfo=UTC)
    span = datetime(YEAR + 1, 1, 1, tzinfo=UTC) - start
    with path.open("w") as file:
        for number in range(EVENTS):
            file.write(
                json.dumps(
                    {
                        "event_id": f"e-{number}",
                        "timestamp": (start + span * number / EVENTS).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "team": f"team-{number % 2}",
                        "agent": f"agent-{number % 3}",
                        "provider": "openai",
                        "model": "gpt-4o",
                        "usage": {"uncached_input": 100 + number, "output": 7},
                    }
                )
                + "\n"
            )


def call_partitions() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'ledger_call'::regclass "
            "ORDER BY 1"
        )
        return [name for (name,) in cursor.fetchall()]


def ledger_without_partitions() -> None:
    with connection.cursor() as cursor:
        for name in call_partitions():
            cursor.execute(f"DROP TABLE {name}")
        cursor.execute("TRUNCATE ledger_eventkey, ledger_call, ledger_dailyrollup, ledger_task")
    services._known_partitions.clear()  # this process must not remember the partitions just dropped


@pytest.mark.django_db(transaction=True)
def test_an_import_over_twelve_months_creates_its_partitions_without_deadlock(tmp_path, monkeypatch):
    path = tmp_path / "year.jsonl"
    write_time_ordered_events(path)
    writer_threads = set()
    stage_write = writer._stage_write

    def recording_stage_write(**options):
        writer_threads.add(threading.current_thread().name)
        return stage_write(**options)

    monkeypatch.setattr(writer, "_stage_write", recording_stage_write)

    for round_number in range(ROUNDS):
        ledger_without_partitions()
        writer_threads.clear()

        summary = file_import(path=path, file_format="events-jsonl", batch_size=BATCH_SIZE)

        assert (summary.rows_read, summary.accepted, summary.duplicates, summary.rejected) == (
            EVENTS,
            EVENTS,
            0,
            0,
        ), f"round {round_number}"
        assert writer_threads == {"finops-writer-1", "finops-writer-2"}  # both writers wrote batches
        assert Call.objects.count() == EventKey.objects.count() == EVENTS
        assert call_partitions() == [f"ledger_call_p{YEAR}_{month:02d}" for month in range(1, 13)]
