"""`finops import` and the file import service: JSONL and CSV with good and bad rows, re-import,
format detection, the summary, and constant memory on a large file."""

from __future__ import annotations

import json
import tracemalloc
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from finops.ledger.models import Call, DailyRollup, Task
from ingest.imports import ImportFileError, file_import, import_format_detect
from ingest.models import QuarantinedRow
from tests.imports.conftest import canonical_event, litellm_payload, write_csv, write_jsonl


def csv_row(event_id: str, **overrides) -> dict:
    row = {
        "event_id": event_id,
        "timestamp": "2026-11-02T10:15:00Z",
        "team": "support",
        "agent": "ticket-triage",
        "task_id": "run-1",
        "step": "1",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "uncached_input": "1200",
        "cache_read": "38000",
        "cache_write_5m": "0",
        "cache_write_1h": "",
        "output": "310",
        "reasoning": "0",
        "batch": "false",
        "latency_ms": "2300",
        "status": "ok",
        "prompt_version": "triage@4f2a9c",
        "max_tokens": "1024",
        "reported_cost_usd": "0.0171",
        "input_breakdown": "",
        "tool_calls": '[{"name": "search_kb", "args_hash": "9b1d"}]',
        "tags": '{"feature": "refunds"}',
    }
    row.update(overrides)
    return row


@pytest.fixture
def jsonl_file(tmp_path):
    return write_jsonl(
        tmp_path / "events.jsonl",
        [
            canonical_event("e-1"),
            canonical_event("e-2", step=2),
            canonical_event("e-bad-time", timestamp="yesterday"),  # line 3
            "{not json",  # line 4
            "",  # blank lines are skipped, not rejected
            canonical_event("e-3", step=3),
            canonical_event("e-1"),  # a duplicate inside the file
        ],
    )


def test_a_jsonl_file_is_imported_and_its_bad_rows_quarantined_with_line_numbers(db, jsonl_file):
    summary = file_import(path=jsonl_file)

    assert summary.format == "events-jsonl"
    assert (summary.rows_read, summary.accepted, summary.duplicates, summary.rejected) == (6, 3, 1, 2)
    assert summary.source == "file:events.jsonl"
    assert summary.progress.bytes_done == summary.progress.bytes_total == jsonl_file.stat().st_size
    assert Call.objects.count() == 3
    quarantined = {row.position: row for row in QuarantinedRow.objects.filter(source="file:events.jsonl")}
    assert sorted(quarantined) == ["line 3", "line 4"]
    assert quarantined["line 3"].payload["timestamp"] == "yesterday"
    assert "ISO 8601" in quarantined["line 3"].errors["timestamp"][0]
    assert quarantined["line 4"].payload == "{not json"
    assert "not JSON" in quarantined["line 4"].errors["non_field_errors"][0]
    assert quarantined["line 3"].team.slug == "support"


def test_importing_the_same_file_again_changes_nothing(db, jsonl_file):
    file_import(path=jsonl_file)
    rollups = list(DailyRollup.objects.order_by("pk").values())
    tasks = list(Task.objects.order_by("pk").values())

    again = file_import(path=jsonl_file)

    assert (again.accepted, again.duplicates, again.rejected) == (0, 4, 2)
    assert Call.objects.count() == 3
    assert list(DailyRollup.objects.order_by("pk").values()) == rollups
    assert list(Task.objects.order_by("pk").values()) == tasks
    # the rows still refused are the same quarantined rows, refreshed, not a second copy
    assert QuarantinedRow.objects.filter(source="file:events.jsonl").count() == 2


def test_a_csv_file_is_imported_with_typed_cells_and_bad_cells_rejected_by_line(db, tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        [
            csv_row("c-1"),
            csv_row("c-2", step="two"),  # line 3
            csv_row("c-3", batch="maybe", tags="{oops"),  # line 4
            csv_row("c-4", uncached_input="-5"),  # line 5: the writer refuses it
            csv_row("c-5", task_id="", step=""),
        ],
    )

    summary = file_import(path=path)

    assert summary.format == "events-csv"
    assert (summary.accepted, summary.duplicates, summary.rejected) == (2, 0, 3)
    call = Call.objects.get(event_id="c-1")
    assert (call.uncached_input, call.cache_read, call.cache_write_1h, call.output) == (1200, 38000, 0, 310)
    assert call.tool_calls == [{"name": "search_kb", "args_hash": "9b1d"}]
    assert call.tags == {"feature": "refunds"}
    assert call.reported_cost_usd == Decimal("0.0171")
    assert Call.objects.get(event_id="c-5").task_id is None
    quarantined = {row.position: row for row in QuarantinedRow.objects.filter(source="file:events.csv")}
    assert sorted(quarantined) == ["line 3", "line 4", "line 5"]
    assert "'two' is not a whole number" in quarantined["line 3"].errors["step"][0]
    assert set(quarantined["line 4"].errors) == {"batch", "tags"}
    assert "usage.uncached_input" in quarantined["line 5"].errors
    assert quarantined["line 3"].payload["step"] == "two"  # the CSV row as read, for replay
    assert quarantined["line 3"].adapter == "events-csv"


def test_a_csv_with_the_wrong_header_fails_before_any_row(db, tmp_path):
    path = write_csv(tmp_path / "events.csv", [csv_row("c-1")], columns=["event_id", "timestamp", "teem"])
    with pytest.raises(ImportFileError, match="missing column.*unknown column"):
        file_import(path=path)
    assert Call.objects.count() == 0


def test_formats_are_detected_from_extension_and_first_line(tmp_path):
    assert (
        import_format_detect(path=write_jsonl(tmp_path / "a.jsonl", [canonical_event("x")])) == "events-jsonl"
    )
    assert import_format_detect(path=write_jsonl(tmp_path / "b.log", [litellm_payload("x")])) == "litellm"
    assert import_format_detect(path=write_csv(tmp_path / "c.csv", [csv_row("x")])) == "events-csv"
    otlp = write_jsonl(tmp_path / "d.json", [{"resourceSpans": []}])
    assert import_format_detect(path=otlp) == "otlp-json"
    focus = tmp_path / "bill.csv"
    focus.write_text("BilledCost,ChargePeriodStart\n1,2026-10-01\n")
    assert import_format_detect(path=focus) == "focus"
    array = tmp_path / "e.json"
    array.write_text(json.dumps([canonical_event("x")]))
    with pytest.raises(ImportFileError, match="jq -c"):
        import_format_detect(path=array)


def test_litellm_logs_import_from_a_file(db, tmp_path):
    path = write_jsonl(tmp_path / "litellm.jsonl", [litellm_payload("l-1"), litellm_payload("l-2")])
    summary = file_import(path=path)
    assert (summary.format, summary.accepted) == ("litellm", 2)
    assert Call.objects.get(event_id="l-1").reasoning == 500


def test_the_command_prints_a_progress_bar_and_says_where_rejected_rows_went(db, jsonl_file):
    stdout, stderr = StringIO(), StringIO()
    call_command("import", str(jsonl_file), stdout=stdout, stderr=stderr)

    summary = stdout.getvalue()
    assert "accepted             3" in summary
    assert "duplicates           1" in summary
    assert "rejected             2" in summary
    assert 'source "file:events.jsonl"' in summary
    assert "/ingest/quarantine?source=file%3Aevents.jsonl" in summary
    assert "GET /api/v1/quarantine?source=file%3Aevents.jsonl" in summary
    assert "line 3: timestamp:" in summary


def test_the_progress_bar_shows_bytes_and_rows_per_second():
    import importlib

    from ingest.imports import ImportProgress

    command = importlib.import_module("ingest.management.commands.import")
    stream = StringIO()
    bar = command.ProgressBar(stream=stream, label="events.jsonl")
    bar.update(ImportProgress(bytes_total=4 * 2**20, bytes_done=2**20, rows_read=5000))
    bar.update(ImportProgress(bytes_total=4 * 2**20, bytes_done=2 * 2**20, rows_read=10000))  # too soon
    bar.update(ImportProgress(bytes_total=4 * 2**20, bytes_done=4 * 2**20, rows_read=20000), final=True)

    drawn = stream.getvalue().split("\r")[1:]
    assert len(drawn) == 2
    assert "25%" in drawn[0] and "1.0 MB/4.0 MB" in drawn[0] and "5,000 rows" in drawn[0]
    assert "rows/s" in drawn[0]
    assert "100%" in drawn[1] and drawn[1].endswith("\n")


def test_a_focus_file_becomes_statement_lines_never_calls(db, tmp_path):
    focus = tmp_path / "bill.csv"
    focus.write_text(
        "BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ProviderName,ChargeDescription\n"
        "1.25,USD,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,Anthropic,claude-sonnet-4-5 output tokens\n"
    )
    call_command("import", str(focus), "--no-progress", stdout=StringIO())

    from ingest.connectors.models import StatementLine

    line = StatementLine.objects.get()
    assert (line.provider, line.amount) == ("anthropic", Decimal("1.25"))
    assert Call.objects.count() == 0


def test_a_large_file_is_imported_in_constant_memory(db, tmp_path):
    rows = 200_000
    path = tmp_path / "big.jsonl"
    with path.open("w") as handle:
        for number in range(rows):
            event = canonical_event(f"big-{number}", task_id=f"run-{number // 20}", step=number % 20 + 1)
            handle.write(json.dumps(event) + "\n")
    file_size_mb = path.stat().st_size / 2**20

    tracemalloc.start()
    try:
        summary = file_import(path=path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary.accepted == rows
    # the file is ~{file_size_mb:.0f} MB; holding it, or its rows, would take several times that
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MB for a {file_size_mb:.0f} MB file"


def test_otlp_json_files_map_llm_spans_through_ingest_otlp(db, tmp_path):
    def attribute(key, value):
        kind = "intValue" if isinstance(value, int) else "stringValue"
        return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}

    start_ns = 1793614500 * 10**9
    export = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [attribute("service.name", "triage"), attribute("finops.team", "support")]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat gpt-4o",
                                "startTimeUnixNano": str(start_ns),
                                "endTimeUnixNano": str(start_ns + 10**9),
                                "attributes": [
                                    attribute("gen_ai.operation.name", "chat"),
                                    attribute("gen_ai.provider.name", "openai"),
                                    attribute("gen_ai.request.model", "gpt-4o"),
                                    attribute("gen_ai.usage.input_tokens", 1000),
                                    attribute("gen_ai.usage.output_tokens", 50),
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    path = write_jsonl(tmp_path / "traces.json", [export])

    summary = file_import(path=path)

    assert (summary.format, summary.accepted, summary.rejected) == ("otlp-json", 1, 0)
    call = Call.objects.get()
    assert (call.provider, call.model, call.uncached_input, call.output) == ("openai", "gpt-4o", 1000, 50)


def test_line_numbers_of_rejected_rows_count_blank_lines_across_batches(db, tmp_path):
    path = write_jsonl(
        tmp_path / "gaps.jsonl",
        [
            canonical_event("g-1"),
            "",
            "   ",
            canonical_event("g-2", timestamp="yesterday"),  # line 4
            canonical_event("g-3"),
            "",
            "{not json",  # line 7
            canonical_event("g-4", team=""),  # line 8
        ],
    )
    summary = file_import(path=path, batch_size=2)  # batches cut across the blank lines

    assert (summary.rows_read, summary.accepted, summary.duplicates, summary.rejected) == (5, 2, 0, 3)
    positions = QuarantinedRow.objects.filter(source="file:gaps.jsonl").values_list("position", flat=True)
    assert sorted(positions) == ["line 4", "line 7", "line 8"]
    assert [sample["position"] for sample in summary.rejected_samples] == ["line 4", "line 7", "line 8"]
