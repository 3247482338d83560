"""Fixtures for the OTLP tests: committed data for the live server, and cleanup the flush does not do."""

from __future__ import annotations

import pytest
from django.db import connection
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from finops.accounts.services import api_token_create


@pytest.fixture
def otlp_db(transactional_db):
    """The live server sees committed rows only. ledger_call is partitioned and unmanaged, so the
    transactional flush does not empty it: delete this test's calls before the flush runs."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_call WHERE event_id LIKE 'otlp:%%'")


@pytest.fixture
def secret(otlp_db) -> str:
    """An org-wide token with the ingest scope."""
    return api_token_create(name="otel", scopes=["ingest"])[1]


@pytest.fixture
def make_tracer_provider(otlp_db):
    """make_tracer_provider(processor, team="support") -> TracerProvider, shut down after the test so
    the exporter's kept-alive HTTP connection (and the server thread's database session) is closed."""
    providers: list[TracerProvider] = []

    def make(processor, *, team: str | None = "support") -> TracerProvider:
        attributes = {"service.name": "triage-svc"}
        if team:
            attributes["finops.team"] = team
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(processor)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.shutdown()
