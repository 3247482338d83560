"""The staging table is empty for every batch: emptied by the commit, or by the writer when an earlier
batch of the same transaction (or of a rolled-back one) left its rows there."""

from __future__ import annotations

import pytest
from django.db import transaction

from finops.ledger.models import Call, DailyRollup
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
