"""A provider's month built by hand: the ledger's daily rollups (telemetry) and statement lines, with
numbers the tests know, so each reconciliation figure is checked against arithmetic done in the test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES
from ingest.connectors.models import StatementLine
from tests.factories import AgentFactory, TeamFactory

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
