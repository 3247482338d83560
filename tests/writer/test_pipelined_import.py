"""A file import pipelined through WritePipeline (writer thread, own connection) writes exactly the
ledger the serial import writes, and an error in the writer thread surfaces as an error, not a hang."""

from __future__ import annotations

import gc
import json
import math
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import ingest.writer as writer
from finops.ledger.models import Call, DailyRollup, EventKey, Task
from ingest.imports import file_import
from ingest.models import QuarantinedRow

MODELS = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o"), ("acme", "acme-large-2")]


def write_events(path, count: int) -> None:
    lines = []
    for number in range(count):
        provider, model = MODELS[number % len(MODELS)]
        event = {
            "event_id": f"e-{number % (count - 5)}",  # the last five repeat earlier ones: duplicates
            "timestamp": f"2026-{9 + number % 2:02d}-{1 + number % 28:02d}T{number % 24:02d}:15:00Z",
            "team": f"team-{number % (count - 5) % 3}",
            "agent": f"agent-{number % 4}",
            "task_id": f"run-{number // 6}" if number % 5 else None,
            "step": number % 6 + 1,
            "provider": provider,
            "model": model,
            "usage": {"uncached_input": 100 + number, "cache_read": 7 * number, "output": 33},
            "batch": number % 7 == 0,
            "tags": {"n": number} if number % 3 == 0 else None,
        }
        lines.append(json.dumps(event))
        if number % 17 == 0:
            lines.append('{"event_id": "broken", "usage": {}}')  # quarantined: required fields missing
    path.write_text("\n".join(lines) + "\n")


def ledger() -> dict[str, list]:
    call_fields = [
        field.attname for field in Call._meta.concrete_fields if field.name not in {"id", "ingested_at"}
    ]
    rollup_fields = [field.attname for field in DailyRollup._meta.concrete_fields if field.name != "id"]
    task_fields = [field.attname for field in Task._meta.concrete_fields if field.name != "id"]
    return {
        "calls": sorted(Call.objects.values_list(*call_fields), key=repr),
        "rollups": sorted(DailyRollup.objects.values_list(*rollup_fields), key=repr),
        "tasks": sorted(Task.objects.values_list(*task_fields), key=repr),
        "keys": sorted(EventKey.objects.values_list("team_id", "event_id", "timestamp")),
        "quarantine": sorted(QuarantinedRow.objects.values_list("source", "position", "errors"), key=repr),
    }


def ledger_clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE ledger_eventkey, ledger_call, ledger_dailyrollup, ledger_task, ingest_quarantinedrow"
        )


def import_in_a_thread(*, path, batch_size: int, hang: str):
    """file_import's summary, or the error it raised, from a thread of its own, so that a hang fails
    the test (saying `hang`) instead of stopping the suite."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(file_import(path=path, file_format="events-jsonl", batch_size=batch_size))
        except BaseException as error:  # noqa: BLE001 — inspected by the test
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), hang
    return outcome[0]


def counts(summary) -> tuple[int, int, int, int]:
    return summary.rows_read, summary.accepted, summary.duplicates, summary.rejected


@pytest.mark.django_db(transaction=True)
def test_pipelined_import_writes_the_same_ledger_as_the_serial_one(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    write_events(path, 400)
    submitted = []
    monkeypatch.setattr(writer.WritePipeline, "submit", _counting(writer.WritePipeline.submit, submitted))

    switch_interval, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    pipelined = file_import(path=path, file_format="events-jsonl", batch_size=37)
    assert submitted, "the import in autocommit mode went through the pipeline"
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == (switch_interval, frozen)  # as they were
    pipelined_ledger = ledger()
    ledger_clear()
    submitted.clear()
    with transaction.atomic():  # a caller's transaction: the writer thread could not join it, so serial
        serial = file_import(path=path, file_format="events-jsonl", batch_size=37)
    assert not submitted

    assert counts(pipelined) == counts(serial) == (400 + 24, 395, 5, 24)
    assert ledger() == pipelined_ledger
    assert len(pipelined_ledger["calls"]) == 395
    again = file_import(path=path, file_format="events-jsonl", batch_size=37)  # a retried import
    assert counts(again) == (424, 0, 400, 24)
    assert ledger() == pipelined_ledger


@pytest.mark.django_db(transaction=True)
def test_a_batch_reaches_the_writer_only_once_its_transaction_committed(tmp_path, monkeypatch):
    """A batch's new teams and agents are inserted in the importing thread's transaction; a writer
    thread that committed the batch's rows before that transaction did failed their foreign keys
    (seen in CI: `Key (agent_id)=(728) is not present in table "ledger_agent"`)."""
    path = tmp_path / "events.jsonl"
    write_events(path, 400)
    in_transaction = []
    submit = writer.WritePipeline.submit

    def submit_watched(self, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return submit(self, **kwargs)

    monkeypatch.setattr(writer.WritePipeline, "submit", submit_watched)
    summary = file_import(path=path, file_format="events-jsonl", batch_size=10)
    assert counts(summary) == (424, 395, 5, 24)
    assert len(in_transaction) == math.ceil(424 / 10) and not any(in_transaction)
    assert Call.objects.count() == 395


@pytest.mark.django_db(transaction=True)
def test_an_error_in_the_writer_thread_is_raised_not_hung(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    write_events(path, 400)
    written = []
    real_write = writer._stage_write

    def failing_write(*, stage, **options):
        if written:
            raise RuntimeError("the database went away")
        written.append(stage.rows)
        return real_write(stage=stage, **options)

    monkeypatch.setattr(writer, "_stage_write", failing_write)

    outcome = import_in_a_thread(
        path=path, batch_size=10, hang="the import hung after its writer thread failed"
    )
    assert isinstance(outcome, RuntimeError) and str(outcome) == "the database went away"
    assert Call.objects.count() == written[0]  # the batch written before the failure, nothing after


def _counting(submit, calls: list):
    def counted(self, **kwargs):
        calls.append(kwargs["stage"].rows)
        return submit(self, **kwargs)

    return counted


def test_the_python_copy_row_encoder_matches_psycopgs():
    rows = [
        (
            0,
            "e-1",
            datetime(2026, 10, 1, 12, tzinfo=UTC),
            7,
            9,
            "run-1",
            3,
            "openai",
            "gpt-4o",
            1,
            2,
            0,
            0,
            5,
            0,
        )
        + (b'{"a": 1}', True, 1200, "ok", None, None, None, "0.0171", None, 10**15, 1, 2, 3, 4, 5, 6)
        + (uuid.UUID("7d9f1a52-4c0e-4b8e-9a51-0c6f2b1d3e4f"),)  # the guard check's reservation_id
        + (2000, None, 30000, None, None, 200, 7, None),  # the input tokens by part of the prompt
        (1, "é-ü", datetime(2026, 10, 1, 12, tzinfo=UTC), 7, 9, None, None, "acme", "x", 0, 0, 0, 0, 0, 0)
        + (
            None,
            False,
            None,
            "ok",
            "p@1",
            4096,
            b"[]",
            None,
            msgspec.Raw(b'{"k": "v"}'),  # JSON values are passed on as decoded: raw buffers
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        + (None,) * 7
        + (3,),  # no breakdown: its input tokens are not broken down
    ]
    transformer = writer.copy_transformer()
    python, native = bytearray(), bytearray()
    for row in rows:
        writer._format_row_binary(row, transformer, python)
        writer._format_row(row, transformer, native)
    assert python == native


@pytest.mark.django_db
def test_a_batch_looks_up_its_teams_and_agents_in_one_query():
    events = [
        {
            "event_id": f"e-{number}",
            "timestamp": "2026-10-01T12:00:00Z",
            "team": f"team-{number % 4}",
            "agent": f"agent-{number % 5}",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"uncached_input": 10, "output": 5},
        }
        for number in range(40)
    ]
    writer.events_ingest(raw_events=events[::2] + events[1::2], principal=None, source="test")  # creates them
    again = [dict(event, event_id=f"again-{event['event_id']}") for event in events]
    with CaptureQueriesContext(connection) as queries:
        result = writer.events_ingest(raw_events=again, principal=None, source="test")
    assert result.accepted == 40
    lookups = [
        query["sql"] for query in queries if "accounts_team" in query["sql"] or "ledger_agent" in query["sql"]
    ]
    assert len(lookups) == 1  # 4 teams × 5 agents: 20 pairs, one lookup for all of them
    assert len(queries) <= 14  # and the write itself: stage, keys, calls with rollups, savepoints


@pytest.mark.django_db(transaction=True)
def test_an_error_in_the_importing_thread_stops_the_writer_and_is_raised(tmp_path, monkeypatch):
    import ingest.imports as imports

    path = tmp_path / "events.jsonl"
    write_events(path, 400)
    real_ingest, calls = imports.source_rows_ingest, []

    def failing_ingest(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("a bad adapter")
        return real_ingest(**kwargs)

    monkeypatch.setattr(imports, "source_rows_ingest", failing_ingest)
    switch_interval = sys.getswitchinterval()
    with pytest.raises(ValueError, match="a bad adapter"):
        file_import(path=path, file_format="events-jsonl", batch_size=50)
    assert sys.getswitchinterval() == switch_interval
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("finops-writer")]
    assert 0 < Call.objects.count() <= 100  # the two batches handed over before the error were written


@pytest.mark.django_db(transaction=True)
def test_of_an_event_sent_twice_the_first_occurrence_wins_though_a_later_batch_is_written_first(
    tmp_path, monkeypatch
):
    # given the same event in two adjacent batches, with other tokens, and the writer of the first
    # batch slowed down before it inserts anything, so the second batch's writer is ready first
    def line(event_id: str, uncached_input: int) -> str:
        return json.dumps(
            {
                "event_id": event_id,
                "timestamp": "2026-10-02T10:00:00Z",
                "team": "support",
                "agent": "triage",
                "provider": "openai",
                "model": "gpt-4o",
                "usage": {"uncached_input": uncached_input, "output": 1},
            }
        )

    path = tmp_path / "twice.jsonl"
    path.write_text(
        "\n".join(
            [line("a", 111), line("x1", 1), line("x2", 1), line("a", 222), line("y1", 1), line("y2", 1)]
        )
    )
    real_ensure, calls = writer.call_partitions_ensure, []

    def slow_first_batch(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)
        return real_ensure(**kwargs)

    monkeypatch.setattr(writer, "call_partitions_ensure", slow_first_batch)
    # when
    summary = import_in_a_thread(path=path, batch_size=3, hang="the writers deadlocked")
    # then
    assert (summary.accepted, summary.duplicates) == (5, 1)
    assert Call.objects.get(event_id="a").uncached_input == 111
    assert sum(DailyRollup.objects.values_list("uncached_input", flat=True)) == 111 + 4
