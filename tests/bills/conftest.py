"""Bills tests' worlds, with numbers the tests know, so each figure is checked against arithmetic done in
the test:

- a provider's month built by hand (MonthBuilder): the ledger's daily rollups (telemetry) and statement
  lines, for the reconciliation;
- calls of gpt-4o sent through the real POST /api/v1/events (uncached input at the published $2.50 per
  MTok, so a million tokens cost exactly $2.50: tests/ledger/reference.py) and statement lines of the
  provider's side made as ingest stores them, for month close and chargeback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole
from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES
from ingest.connectors.models import StatementLine
from tests.factories import AgentFactory, TeamFactory, UserFactory

MONTH = date(2026, 11, 1)
COST_SOURCE = "anthropic_cost:1"
USAGE_SOURCE = "anthropic_usage:2"


def day(number: int) -> date:
    return date(2026, 11, number)


@dataclass
class MonthBuilder:
    agent: object
    provider: str = "anthropic"

    def telemetry(
        self,
        on: date,
        model: str,
        token_type: str,
        tokens: int,
        usd: str | Decimal,
        *,
        batch_calls: int = 0,
        provider: str | None = None,
    ) -> None:
        """Add tokens and their cost to the day's rollup of the model (one row per day and model)."""
        row, _ = DailyRollup.objects.get_or_create(
            day=on,
            team=self.agent.team,
            agent=self.agent,
            provider=provider or self.provider,
            model=model,
        )
        setattr(row, token_type, getattr(row, token_type) + tokens)
        cost_field = f"cost_{token_type}_usd"
        setattr(row, cost_field, getattr(row, cost_field) + Decimal(usd))
        row.cost_usd = sum((getattr(row, f"cost_{name}_usd") for name in TOKEN_TYPES), Decimal(0))
        row.calls += 1
        row.batch_calls += batch_calls
        row.save()

    def statement(
        self,
        on: date,
        model: str,
        token_type: str,
        quantity: int | None,
        amount: str | Decimal | None,
        *,
        kind: str = "cost",
        source: str = COST_SOURCE,
        line_item: str = "",
        provider: str | None = None,
        currency: str = "USD",
        pulled_at: datetime | None = None,
        **dimensions,
    ) -> StatementLine:
        start = datetime(on.year, on.month, on.day, tzinfo=UTC)
        return StatementLine.objects.create(
            source=source,
            provider=provider or self.provider,
            kind=kind,
            period_start=start,
            period_end=start + timedelta(days=1),
            model=model,
            token_type=token_type,
            line_item=line_item or f"{model} {token_type}",
            quantity=quantity,
            amount=None if amount is None else Decimal(amount),
            currency=currency if amount is not None else "",
            pulled_at=pulled_at or datetime(2026, 12, 1, 3, tzinfo=UTC),
            **dimensions,
        )

    def both(self, on: date, model: str, token_type: str, tokens: int, usd: str, **dimensions) -> None:
        """The same tokens and dollars on both sides: a matched line."""
        self.telemetry(on, model, token_type, tokens, usd)
        self.statement(on, model, token_type, tokens, usd, **dimensions)


@pytest.fixture
def month(db) -> MonthBuilder:
    return MonthBuilder(agent=AgentFactory(team=TeamFactory(slug="support"), name="ticket-triage"))


# --- month close and chargeback ---

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
