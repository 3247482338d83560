"""The staging table is empty for every batch: emptied by the commit, or by the writer when an earlier
batch of the same transaction (or of a rolled-back one) left its rows there."""

from __future__ import annotations

import pytest
from django.db import transaction

from finops.ledger.models import Call, DailyRollup
from ingest.models import QuarantinedRow
from ingest.writer import events_ingest


def events(prefix: str, count: int) -> list[dict]:
    return [
        {
            "event_id": f"{prefix}-{number}",
            "timestamp": "2026-10-01T12:00:00Z",
            "team": "support",
            "agent": "triage",
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"uncached_input": 10, "output": 5},
        }
        for number in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_batches_in_one_transaction_and_after_a_rollback_each_write_only_their_own_rows():
    with transaction.atomic():
        assert events_ingest(raw_events=events("a", 30), principal=None, source="test").accepted == 30
        assert events_ingest(raw_events=events("b", 20), principal=None, source="test").accepted == 20
    with pytest.raises(RuntimeError), transaction.atomic():
        events_ingest(raw_events=events("c", 10), principal=None, source="test")
        raise RuntimeError("the caller fails after the write")
    assert events_ingest(raw_events=events("d", 5), principal=None, source="test").accepted == 5  # autocommit
    assert events_ingest(raw_events=events("e", 7), principal=None, source="test").accepted == 7

    assert Call.objects.count() == 30 + 20 + 5 + 7
    assert sum(DailyRollup.objects.values_list("calls", flat=True)) == 62


@pytest.mark.django_db
def test_a_key_repeated_within_a_batch_is_written_once_as_its_first_occurrence():
    # given a batch whose keys are all new but one repeats (with other tokens), which the plain key
    # insert refuses, so the writer falls back to the insert that skips known keys
    rows = events("r", 4)
    rows.insert(1, dict(rows[3], usage={"uncached_input": 999, "output": 1}))  # r-3 first, with 999
    # when
    result = events_ingest(raw_events=rows, principal=None, source="test")
    # then
    assert (result.accepted, result.duplicates) == (4, 1)
    assert Call.objects.get(event_id="r-3").uncached_input == 999
    rollup = DailyRollup.objects.get()
    assert (rollup.calls, rollup.uncached_input) == (4, 10 * 3 + 999)


@pytest.mark.django_db
def test_a_batch_mixing_stored_and_new_keys_writes_exactly_the_new_ones():
    events_ingest(raw_events=events("m", 3), principal=None, source="test")
    mixed = events("m", 6)  # m-0 … m-2 stored already, in the middle of the batch's key order
    result = events_ingest(raw_events=mixed[::-1], principal=None, source="test")
    assert (result.accepted, result.duplicates) == (3, 3)
    assert sorted(Call.objects.values_list("event_id", flat=True)) == [f"m-{n}" for n in range(6)]
    rollup = DailyRollup.objects.get()
    assert (rollup.calls, rollup.uncached_input, rollup.output) == (6, 60, 30)


@pytest.mark.django_db
def test_an_adapters_event_with_a_lone_surrogate_is_a_rejected_row():
    # adapters hand dicts to the writer; json.loads lets a "\ud800" escape through, msgspec will not encode it
    bad, good = events("s", 2)
    bad["agent"] = "triage-\ud800"
    result = events_ingest(raw_events=[bad, good], principal=None, source="test")
    assert result.accepted == 1
    assert [row["index"] for row in result.rejected] == [0]
    assert "surrogate" in result.rejected[0]["errors"]["agent"][0]
    assert QuarantinedRow.objects.get().event_id == "s-0"
