"""The OpenAPI schema is the contract: Schemathesis walks it and holds every answer to it.

Every operation the schema lists (new ones too: the schema is walked, not a list here) is called through
the WSGI app against real PostgreSQL, with an org-wide token holding every scope and seeded rows so the
lists answer real data, under every Schemathesis check. Then the stateful run follows the links the
schema implies (a list's ids into its detail operation). Bounded by examples per operation.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from finops.accounts.models import TokenScope
from finops.accounts.services import api_token_create
from finops.kpis.selectors import month_window
from finops.wsgi import application
from ingest.connectors.models import StatementLine
from ingest.connectors.services import connector_create
from ingest.otlp.decoding import JSON, PROTOBUF, UndecodableBody, export_request_decode
from tests.conftest import Api

MAX_EXAMPLES = 10  # per operation and phase; the whole run takes about a minute on two busy cores
STATEFUL_SCENARIOS = 15
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # a busy shared machine must not fail a contract test by its clock
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)


def seed(api: Api) -> None:
    """A few real rows of each kind the API lists: calls, a task, a quarantined row, a statement line."""
    events = [
        {
            "event_id": f"seed-{index}",
            "timestamp": datetime.now(UTC).isoformat(),
            "team": "support",
            "agent": "ticket-triage",
            "task_id": "seed-run",
            "step": index,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "usage": {"uncached_input": 1200, "cache_read": 38000, "output": 310},
        }
        for index in range(3)
    ]
    events.append({"event_id": "seed-bad", "team": "support"})  # quarantined: no timestamp, no usage
    assert api.post("/api/v1/events", events).json()["accepted"] == 3
    now = datetime.now(UTC).isoformat()
    task = {"task_id": "seed-run", "team": "support", "agent": "ticket-triage", "status": "success"}
    assert api.post("/api/v1/tasks", [{**task, "started_at": now, "ended_at": now}]).status_code == 200
    connector_create(kind="openai_costs", name="seed", credentials={"api_key": "sk-admin-seed"})
    StatementLine.objects.create(
        provider="openai",
        kind="cost",
        source="seed",
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        period_end=datetime(2026, 11, 2, tzinfo=UTC),
        model="gpt-4o",
        amount="1.25",
        currency="USD",
        pulled_at=datetime.now(UTC),
    )


NOT_PROTOBUF = b"\x0a\xff"  # field 1, length-delimited, cut short: no protobuf parser reads it


@schemathesis.serializer(PROTOBUF)
def otlp_protobuf(ctx, value) -> bytes:
    """The schema gives OTLP's protobuf body as its message's fields: send them in the binary encoding.
    A value the schema forbids has no binary encoding, so it goes as bytes that are not protobuf."""
    try:
        message = export_request_decode(body=json.dumps(value).encode(), encoding=JSON)
    except UndecodableBody:
        return NOT_PROTOBUF
    return message.SerializeToString()


@pytest.fixture
def auth_headers(db, settings) -> dict[str, str]:
    """An org-wide token with every scope, and seeded rows; the WSGI app shares the test's transaction."""
    # schemathesis sends hundreds of unknown tokens (the ignored-auth check) from one address: the
    # guessing throttle (tested in tests/accounts/test_throttling.py) would answer the rest with 429s
    settings.FINOPS_TOKEN_FAILURES_PER_ADDRESS = 10**9
    _, secret = api_token_create(name="schemathesis", scopes=list(TokenScope.values))
    seed(Api(secret))
    # as Django's test client does: a request's end must not close the connection holding the test's data
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield {"Authorization": f"Bearer {secret}"}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi(
    "/api/v1/schema",
    application,
    config=schemathesis.Config.from_dict({"generation": {"max-examples": MAX_EXAMPLES}}),
)


def _moment(value):
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    # a date alone (/models/usage takes whole UTC days) is its UTC midnight
    return moment.replace(tzinfo=UTC) if isinstance(value, str) and len(value) == 10 else moment


# The coverage phase tries each field's edge values at every depth: for OTLP's nested spans that is ~4,000
# requests (2.5 minutes). Every n-th of them, in generation order, still reaches every depth.
COVERAGE_SAMPLING = {"POST /v1/traces": 20}
_coverage_seen: Counter[str] = Counter()


def _sampled_out(case) -> bool:
    every = COVERAGE_SAMPLING.get(case.operation.label)
    if not every or case.meta is None or case.meta.phase.name.value != "coverage":
        return False
    _coverage_seen[case.operation.label] += 1
    return _coverage_seen[case.operation.label] % every != 0


@schema.hook
def filter_case(ctx, case) -> bool:
    """Rules between query parameters that OpenAPI cannot state (each is in its parameters' descriptions,
    and each is a 400 naming the parameter): a window ends after it starts (a bound not given is the
    current month's, as for /kpis); an agent is named with its team; a silence ends after it starts and
    in the future; an invoice file is a UTF-8 CSV whose header fits its format or mapping (so no generated
    file is a valid one: POST /api/v1/invoices gets only negative cases here, its imports are tested in
    tests/connectors/test_invoice_api.py). A case breaking one is not a valid case, so it is not sent as
    one."""
    if _sampled_out(case):
        return False
    query = case.query or {}
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    if case.operation.label == "POST /api/v1/invoices":
        return False
    month_start, month_end = month_window()  # where /kpis puts a bound that is not given
    start = _moment(query["start"]) if query.get("start") else month_start  # `?start=` is not given
    end = _moment(query["end"]) if query.get("end") else month_end
    if start and end and start.tzinfo and end.tzinfo and end <= start:
        return False
    if query.get("agent") and not query.get("team"):
        return False
    return _silence_ends_later(case)


def _silence_ends_later(case) -> bool:
    """A silence ends after it starts (default: now) and in the future (its `ends_at` says so)."""
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.label != "POST /api/v1/alert-silences" or not isinstance(body.get("ends_at"), str):
        return True
    now = datetime.now(UTC)
    ends = _moment(body["ends_at"])
    starts = _moment(body["starts_at"]) if isinstance(body.get("starts_at"), str) else now
    if not (ends and starts and ends.tzinfo and starts.tzinfo):
        return True
    return ends > max(starts, now)


@schema.parametrize()
@SETTINGS
def test_every_operation_answers_as_its_schema_says(case, auth_headers):
    case.call_and_validate(headers=auth_headers)


def test_sequences_of_calls_keep_the_contract(auth_headers):
    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": auth_headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # the token is the run's own, not generated: name it so, as call_and_validate does
            case.validate_response(
                response, headers=auth_headers, transport_kwargs=kwargs, recorder=self.recorder
            )

    Workflow.run(settings=settings(SETTINGS, max_examples=STATEFUL_SCENARIOS, stateful_step_count=6))
