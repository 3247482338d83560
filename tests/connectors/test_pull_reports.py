"""The other three reports: OpenAI costs (dollars), Anthropic usage (cache split) and cost (cents)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from ingest.connectors.clients import TransientProviderError, retry_after_seconds
from ingest.connectors.models import ConnectorKind, RunStatus, StatementLine
from ingest.connectors.services import ADVISORY_LOCK_NAMESPACE, connector_create, connector_pull
from tests.connectors.conftest import DAY, Failure, at, rfc3339

NOW = at("2026-11-03T12:00:00")
FIRST_DAY = at("2026-11-01T00:00:00")


def test_openai_costs_are_exact_dollars(make_connector, fake_provider, no_sleep):
    fake_provider.serve(
        style="openai",
        path="/v1/organization/costs",
        buckets=[
            (
                FIRST_DAY,
                [
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 10.1425634, "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, input",
                        "project_id": "proj_a",
                    },
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 0.06, "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, cached input",
                        "project_id": "proj_a",
                    },
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 0.1, "currency": "usd"},
                        "line_item": "Image models",
                        "project_id": None,
                    },
                ],
            ),
            (FIRST_DAY + DAY, []),
        ],
    )
    connector = make_connector(ConnectorKind.OPENAI_COSTS, pull_from=FIRST_DAY)

    run = connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.SUCCEEDED
    lines = {line.line_item: line for line in StatementLine.objects.all()}
    input_line = lines["gpt-4o-2024-08-06, input"]
    # the JSON number is read as a decimal, never through a binary float
    assert input_line.amount == Decimal("10.1425634")
    assert (input_line.currency, input_line.kind, input_line.quantity) == ("USD", "cost", None)
    assert (input_line.model, input_line.token_type, input_line.project_id) == (
        "gpt-4o-2024-08-06",
        "uncached_input",
        "proj_a",
    )
    assert lines["gpt-4o-2024-08-06, cached input"].token_type == "cache_read"
    assert lines["gpt-4o-2024-08-06, cached input"].amount == Decimal("0.06")
    assert (lines["Image models"].model, lines["Image models"].token_type) == ("", "")
    assert sum(line.amount for line in lines.values()) == Decimal("10.3025634")
    assert fake_provider.requests[0].query["group_by"] == ["project_id", "line_item"]


ANTHROPIC_USAGE_RESULT = {
    "uncached_input_tokens": 1500,
    "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
    "cache_read_input_tokens": 200,
    "output_tokens": 500,
    "server_tool_use": {"web_search_requests": 10},
    "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
    "model": "claude-sonnet-4-20250514",
    "service_tier": "standard",
    "context_window": "0-200k",
}


def test_anthropic_usage_keeps_the_cache_split(make_connector, fake_provider, no_sleep):
    batch_result = {**ANTHROPIC_USAGE_RESULT, "service_tier": "batch", "server_tool_use": None}
    fake_provider.serve(
        style="anthropic",
        path="/v1/organizations/usage_report/messages",
        buckets=[(FIRST_DAY, [ANTHROPIC_USAGE_RESULT, batch_result])],
    )
    connector = make_connector(ConnectorKind.ANTHROPIC_USAGE, pull_from=FIRST_DAY, api_key="sk-ant-admin01-x")

    run = connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.SUCCEEDED
    standard = {
        line.token_type or line.line_item: line.quantity
        for line in StatementLine.objects.filter(service_tier="standard")
    }
    # uncached_input_tokens already excludes the cache: nothing is subtracted
    assert standard == {
        "uncached_input": 1500,
        "cache_read": 200,
        "cache_write_5m": 500,
        "cache_write_1h": 1000,
        "output": 500,
        "web_search_requests": 10,
    }
    line = StatementLine.objects.get(service_tier="standard", token_type="uncached_input")
    assert (line.provider, line.workspace_id, line.context_window, line.batch) == (
        "anthropic",
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "0-200k",
        False,
    )
    assert StatementLine.objects.filter(service_tier="batch", batch=True).count() == 5

    seen = fake_provider.requests[0]
    assert seen.headers["x-api-key"] == "sk-ant-admin01-x"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.query["starting_at"] == [rfc3339(FIRST_DAY)]
    assert seen.query["ending_at"] == [rfc3339(NOW)]
    assert seen.query["group_by[]"] == [
        "model",
        "workspace_id",
        "api_key_id",
        "service_tier",
        "context_window",
    ]


def test_anthropic_cost_amounts_are_cents_turned_into_dollars(make_connector, fake_provider, no_sleep):
    def cost(amount: str, token_type: str | None, description: str) -> dict:
        return {
            "amount": amount,
            "currency": "USD",
            "cost_type": "tokens" if token_type else "web_search",
            "description": description,
            "model": "claude-sonnet-4-20250514" if token_type else None,
            "service_tier": "standard" if token_type else None,
            "token_type": token_type,
            "context_window": "0-200k" if token_type else None,
            "workspace_id": None,
        }

    fake_provider.serve(
        style="anthropic",
        path="/v1/organizations/cost_report",
        buckets=[
            (
                FIRST_DAY,
                [
                    cost("123.45", "uncached_input_tokens", "Claude Sonnet 4 Usage - Input Tokens"),
                    cost(
                        "0.5", "cache_creation.ephemeral_1h_input_tokens", "Claude Sonnet 4 - 1h Cache Write"
                    ),
                    cost("1000", None, "Web Search"),
                ],
            )
        ],
    )
    connector = make_connector(ConnectorKind.ANTHROPIC_COST, pull_from=FIRST_DAY)

    connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    amounts = {line.line_item: (line.token_type, line.amount) for line in StatementLine.objects.all()}
    # the documented example: "123.45" in "USD" is $1.2345
    assert amounts == {
        "Claude Sonnet 4 Usage - Input Tokens": ("uncached_input", Decimal("1.2345")),
        "Claude Sonnet 4 - 1h Cache Write": ("cache_write_1h", Decimal("0.005")),
        "Web Search": ("", Decimal("10")),
    }
    assert set(StatementLine.objects.values_list("currency", flat=True)) == {"USD"}
    assert fake_provider.requests[0].query["group_by[]"] == ["workspace_id", "description"]


def test_anthropic_answers_403_with_a_hint_about_the_admin_key(make_connector, fake_provider, no_sleep):
    fake_provider.serve(style="anthropic", path="/v1/organizations/cost_report", buckets=[])
    fake_provider.fail_page(
        1,
        Failure(
            403, body={"type": "error", "error": {"type": "permission_error", "message": "not an admin key"}}
        ),
    )
    connector = make_connector(ConnectorKind.ANTHROPIC_COST, pull_from=FIRST_DAY)

    run = connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Anthropic refused this key access to the report: 403 not an admin key")
    assert "admin key" in run.error.split("—")[1]


def test_a_wrong_base_url_says_so(make_connector, fake_provider, no_sleep):
    fake_provider.serve(style="openai", path="/somewhere/else", buckets=[])
    connector = make_connector(ConnectorKind.OPENAI_USAGE, pull_from=FIRST_DAY)

    run = connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert run.status == RunStatus.FAILED
    assert "404" in run.error and "check the connector's base URL" in run.error


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_a_retry_after_longer_than_a_worker_should_wait_gives_up_at_once(
    make_connector, fake_provider, no_sleep
):
    fake_provider.serve(style="openai", path="/v1/organization/costs", buckets=[])
    fake_provider.fail_page(1, Failure(429, {"Retry-After": "3600"}))
    connector = make_connector(ConnectorKind.OPENAI_COSTS, pull_from=FIRST_DAY)

    with pytest.raises(TransientProviderError, match="asked to wait 3600 s"):
        connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert no_sleep.waits == []


def test_a_second_pull_of_the_same_connector_is_skipped_while_one_runs(
    make_connector, fake_provider, no_sleep
):
    fake_provider.serve(style="openai", path="/v1/organization/costs", buckets=[])
    connector = make_connector(ConnectorKind.OPENAI_COSTS, pull_from=FIRST_DAY)
    params = {
        key: value
        for key, value in connection.get_connection_params().items()
        if key in {"dbname", "user", "password", "host", "port"}
    }
    with psycopg.connect(**params) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, connector.pk])

        run = connector_pull(connector_id=connector.pk, now=NOW, sleep=no_sleep)

    assert (run.status, run.error) == (RunStatus.SKIPPED, "another pull of this connector was running")
    assert fake_provider.requests == []


def test_a_first_pull_starts_at_midnight_whatever_time_it_was_asked_for(db):
    connector = connector_create(
        kind="openai_usage", name="usage", credentials={"api_key": "k"}, pull_from=at("2026-09-01T13:45:00")
    )
    assert connector.cursor == at("2026-09-01T00:00:00")
