"""Alert evaluation fixtures: calls of a model priced at exactly $1 per million uncached input tokens,
so a call of N tokens costs N / 10^6 dollars and a test computes every number itself."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from finops.alerts.models import AlertChannel, AlertRule, ChannelKind
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest

PROVIDER, MODEL = "acme", "acme-alerts-1"
MTOK = Decimal(1_000_000)


@pytest.fixture
def priced(db):
    """The test model's price: $1 per MTok of uncached input; cache reads and output are free."""
    ModelPriceOverride.objects.create(
        provider=PROVIDER,
        model=MODEL,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal(1),
        cache_read_per_mtok=Decimal(0),
        output_per_mtok=Decimal(0),
    )


def event(
    number: int | str,
    *,
    at: datetime,
    team: str = "support",
    agent: str = "triage",
    tokens: int = 1000,
    cache_read: int = 0,
    task_id: str | None = None,
    prompt_version: str | None = None,
) -> dict:
    return {
        "event_id": f"ev-{number}",
        "timestamp": at.astimezone(UTC).isoformat(),
        "team": team,
        "agent": agent,
        "provider": PROVIDER,
        "model": MODEL,
        "task_id": task_id,
        "prompt_version": prompt_version,
        "usage": {"uncached_input": tokens, "cache_read": cache_read},
    }


def ingest(events: list[dict]) -> None:
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert result.accepted == len(events), result.as_json()


def usd(tokens: int) -> Decimal:
    return Decimal(tokens) / MTOK


@pytest.fixture
def channels(db):
    return [
        AlertChannel.objects.create(
            kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/hook", secret="whsec_x"
        ),
        AlertChannel.objects.create(kind=ChannelKind.EMAIL, target="oncall@example.com"),
    ]


def rule_create(*, channels=(), **fields) -> AlertRule:
    fields.setdefault("name", f"{fields['kind']} rule")
    rule = AlertRule.objects.create(**fields)
    rule.channels.set(channels)
    return rule
