"""Bills tests' world: calls of gpt-4o (uncached input at the published $2.50 per MTok, so a million
tokens cost exactly $2.50: tests/ledger/reference.py), sent through the real POST /api/v1/events, and
statement lines of the provider's side made as ingest stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole
from ingest.connectors.models import StatementLine
from tests.factories import UserFactory

GPT_4O_INPUT_PER_MTOK = Decimal("2.50")  # typed in from OpenAI's price page, as tests/ledger/reference.py


def usd_of(uncached_input: int) -> Decimal:
    return Decimal(uncached_input) * GPT_4O_INPUT_PER_MTOK / Decimal(1_000_000)


def call(event_id: str, day: str, team: str, agent: str, uncached_input: int, model: str = "gpt-4o") -> dict:
    return {
        "event_id": event_id,
        "timestamp": f"{day}T12:00:00Z",
        "team": team,
        "agent": agent,
        "provider": "openai",
        "model": model,
        "usage": {"uncached_input": uncached_input},
    }


def send(api, *events: dict) -> None:
    answer = api.post("/api/v1/events", list(events)).json()
    assert answer["accepted"] == len(events), answer


def statement_line(
    *,
    day: str,
    amount: str,
    model: str = "gpt-4o",
    source: str = "focus:invoice-2026-10.csv",
    kind: str = "cost",
    line_item: str = "",
    provider: str = "openai",
) -> StatementLine:
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    return StatementLine.objects.create(
        provider=provider,
        kind=kind,
        source=source,
        period_start=start,
        period_end=start + timedelta(days=1),
        model=model,
        token_type="uncached_input" if model else "",
        line_item=line_item or f"{model or 'fee'} {amount}",
        quantity=None if kind == "cost" else 1000,
        amount=Decimal(amount) if kind == "cost" else None,
        currency="usd",
        pulled_at=datetime(2026, 11, 2, tzinfo=UTC),
    )


@pytest.fixture
def finops_user(db):
    return UserFactory(username="bills-finops", org_role=OrgRole.FINOPS)


@pytest.fixture
def finops_client(finops_user) -> APIClient:
    client = APIClient()
    client.force_login(finops_user)
    return client
