"""Pulling the OpenAI organization Usage API: paging, retries, failures, open buckets and resuming."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum

from ingest.connectors.clients import TransientProviderError
from ingest.connectors.models import Connector, ConnectorKind, RunStatus, StatementLine
from ingest.connectors.services import connector_pull
from tests.connectors.conftest import DAY, Failure, at, unix

NOW = at("2026-11-09T18:00:00")
FIRST_DAY = at("2026-11-01T00:00:00")
DAYS = [FIRST_DAY + n * DAY for n in range(9)]  # 11-01 … 11-09: three pages of three buckets
USAGE_PATH = "/v1/organization/usage/completions"


def gpt4o(n: int, **changes) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000 * n,  # includes the cached ones
        "input_cached_tokens": 400 * n,
        "output_tokens": 100 * n,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": n,
        "project_id": "proj_a",
        "user_id": None,
        "api_key_id": "key_1",
        "model": "gpt-4o-2024-08-06",
        "batch": False,
        **changes,
    }


def mini_batch() -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 500,
        "input_cached_tokens": 0,
        "output_tokens": 50,
        "num_model_requests": 2,
        "project_id": "proj_b",
        "user_id": None,
        "api_key_id": "key_2",
        "model": "gpt-4o-mini",
        "batch": True,
    }


def usage_buckets() -> list:
    return [(day, [gpt4o(n), mini_batch()]) for n, day in enumerate(DAYS, start=1)]


# Σ n for n in 1..9 = 45, so gpt-4o: uncached (1000-400)*45, cache_read 400*45, output 100*45, requests 45;
# gpt-4o-mini (batch): uncached 500*9, no cache read, output 50*9, requests 2*9.
EXPECTED_TOTALS = {
    ("gpt-4o-2024-08-06", "uncached_input", ""): 27_000,
    ("gpt-4o-2024-08-06", "cache_read", ""): 18_000,
    ("gpt-4o-2024-08-06", "output", ""): 4_500,
    ("gpt-4o-2024-08-06", "", "requests"): 45,
    ("gpt-4o-mini", "uncached_input", ""): 4_500,
    ("gpt-4o-mini", "output", ""): 450,
    ("gpt-4o-mini", "", "requests"): 18,
}
LINES_PER_DAY = 7  # gpt-4o: uncached, cache_read, output, requests; mini: uncached, output, requests


def totals() -> dict:
    rows = StatementLine.objects.values("model", "token_type", "line_item").annotate(total=Sum("quantity"))
    return {(row["model"], row["token_type"], row["line_item"]): row["total"] for row in rows}


@pytest.fixture
def usage_connector(make_connector, fake_provider) -> Connector:
    fake_provider.serve(style="openai", path=USAGE_PATH, buckets=usage_buckets())
    return make_connector(ConnectorKind.OPENAI_USAGE, pull_from=FIRST_DAY)


def test_pages_through_three_pages_and_maps_token_types(usage_connector, fake_provider, no_sleep):
    run = connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)

    assert (run.status, run.pages, run.rows, run.error) == (RunStatus.SUCCEEDED, 3, 9 * LINES_PER_DAY, "")
    assert totals() == EXPECTED_TOTALS
    first_day = {
        line.token_type or line.line_item: line
        for line in StatementLine.objects.filter(period_start=FIRST_DAY, model="gpt-4o-2024-08-06")
    }
    # input_tokens 1000 includes input_cached_tokens 400: 600 uncached
    assert {name: line.quantity for name, line in first_day.items()} == {
        "uncached_input": 600,
        "cache_read": 400,
        "output": 100,
        "requests": 1,
    }
    line = first_day["uncached_input"]
    assert (line.provider, line.kind, line.source) == (
        "openai",
        "usage",
        f"openai_usage:{usage_connector.pk}",
    )
    assert (line.period_end, line.project_id, line.api_key_id, line.batch) == (
        FIRST_DAY + DAY,
        "proj_a",
        "key_1",
        False,
    )
    assert (line.amount, line.currency) == (None, "")
    assert StatementLine.objects.filter(model="gpt-4o-mini", batch=True).count() == 9 * 3

    first = fake_provider.requests[0]
    assert first.headers["authorization"] == "Bearer sk-admin-test-key-0001"
    assert first.query["start_time"] == [str(unix(FIRST_DAY))]
    assert first.query["end_time"] == [str(unix(NOW))]
    assert first.query["bucket_width"] == ["1d"]
    assert first.query["group_by"] == ["model", "project_id", "api_key_id", "batch"]
    assert [seen.query.get("page") for seen in fake_provider.requests] == [None, ["3"], ["6"]]

    usage_connector.refresh_from_db()
    # 11-08 closed less than a day before NOW: it stays behind the cursor to be pulled again
    assert usage_connector.cursor == at("2026-11-08T00:00:00")
    assert (usage_connector.last_status, usage_connector.last_rows) == (RunStatus.SUCCEEDED, 63)


def test_pulling_again_counts_nothing_twice(usage_connector, no_sleep):
    connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)
    Connector.objects.filter(pk=usage_connector.pk).update(cursor=FIRST_DAY)  # force a full re-pull

    connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)

    assert StatementLine.objects.count() == 9 * LINES_PER_DAY
    assert totals() == EXPECTED_TOTALS


def test_an_open_bucket_is_pulled_again_and_updated_not_duplicated(usage_connector, fake_provider, no_sleep):
    connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)
    last_day = DAYS[-1]
    # later in the day the provider reports more for 11-09, and the mini batch group is gone
    fake_provider.buckets[-1] = (last_day, [gpt4o(9, input_tokens=20_000, input_cached_tokens=5_000)])

    run = connector_pull(connector_id=usage_connector.pk, now=NOW + timedelta(hours=3), sleep=no_sleep)

    assert fake_provider.requests[-1].query["start_time"] == [str(unix(at("2026-11-08T00:00:00")))]
    assert run.rows == 2 * LINES_PER_DAY - 3
    open_day = {
        (line.model, line.token_type or line.line_item): line.quantity
        for line in StatementLine.objects.filter(period_start=last_day)
    }
    assert open_day == {
        ("gpt-4o-2024-08-06", "uncached_input"): 15_000,
        ("gpt-4o-2024-08-06", "cache_read"): 5_000,
        ("gpt-4o-2024-08-06", "output"): 900,
        ("gpt-4o-2024-08-06", "requests"): 9,
    }
    assert StatementLine.objects.count() == 9 * LINES_PER_DAY - 3


def test_rate_limits_and_server_errors_are_retried_with_backoff(usage_connector, fake_provider, no_sleep):
    fake_provider.fail_page(
        1,
        Failure(429, {"Retry-After": "7"}, {"error": {"message": "Rate limit reached", "type": "requests"}}),
    )
    fake_provider.fail_page(2, Failure(500, body={"error": {"message": "boom"}}), Failure(503))

    run = connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.SUCCEEDED
    assert no_sleep.waits == [7.0, 1.0, 2.0]  # Retry-After honoured, then exponential backoff
    assert totals() == EXPECTED_TOTALS


def test_a_rejected_key_stops_at_once_with_the_fix_in_the_error(usage_connector, fake_provider, no_sleep):
    fake_provider.fail_page(
        1,
        Failure(
            401,
            body={
                "error": {
                    "message": "Incorrect API key provided: sk-admin***0001.",
                    "code": "invalid_api_key",
                }
            },
        ),
    )

    run = connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.FAILED
    assert run.error == (
        "OpenAI rejected the admin key: 401 Incorrect API key provided: sk-admin***0001. "
        "— check the key in the connector settings"
    )
    assert len(fake_provider.requests) == 1 and no_sleep.waits == []
    usage_connector.refresh_from_db()
    assert (usage_connector.last_status, usage_connector.last_error) == (RunStatus.FAILED, run.error)
    assert usage_connector.cursor == FIRST_DAY
    assert not StatementLine.objects.exists()


def test_a_pull_that_dies_on_page_three_resumes_without_gap_or_double_count(
    usage_connector, fake_provider, no_sleep
):
    fake_provider.fail_page(3, Failure(None), Failure(None))  # the connection drops, twice

    with pytest.raises(TransientProviderError, match="did not answer after 2 attempts"):
        connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep, max_attempts=2)

    usage_connector.refresh_from_db()
    assert usage_connector.last_status == RunStatus.FAILED
    assert "connection failed" in usage_connector.last_error
    # pages 1 and 2 (11-01 … 11-06) were saved with the cursor
    assert StatementLine.objects.count() == 6 * LINES_PER_DAY
    assert usage_connector.cursor == at("2026-11-07T00:00:00")

    run = connector_pull(connector_id=usage_connector.pk, now=NOW, sleep=no_sleep)

    assert fake_provider.requests[-1].query["start_time"] == [str(unix(at("2026-11-07T00:00:00")))]
    assert (run.status, run.pages) == (RunStatus.SUCCEEDED, 1)
    assert StatementLine.objects.count() == 9 * LINES_PER_DAY
    assert totals() == EXPECTED_TOTALS
