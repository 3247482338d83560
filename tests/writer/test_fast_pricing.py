"""The bulk path's integer pricer gives exactly the Decimal reference's numbers, discounts and tiers included."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.fast import PicoPricer, pico_to_decimal
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.services import PriceBook

MODELS = [
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-opus-4-1"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-5"),
    ("google", "gemini-2.5-pro"),  # tiered
    ("openai", "o3"),
    ("acme", "acme-large-2"),  # unknown until the override below
]


@pytest.mark.django_db
def test_pico_pricer_equals_the_decimal_reference():
    mid_day = datetime(2026, 10, 10, 13, 37, tzinfo=UTC)
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=mid_day,
        uncached_input_per_mtok=Decimal("1.1"),
        output_per_mtok=Decimal("4.4"),
        cache_read_per_mtok=Decimal("0.11"),
    )
    NegotiatedDiscount.objects.create(
        provider="anthropic", percent=Decimal("12.5"), effective_from=datetime(2026, 10, 5, tzinfo=UTC)
    )
    NegotiatedDiscount.objects.create(
        provider="",
        percent=Decimal("3.333"),
        effective_from=datetime(2026, 10, 8, 6, tzinfo=UTC),
        effective_to=datetime(2026, 10, 12, tzinfo=UTC),
    )
    book = PriceBook.load()
    pricer = PicoPricer(book)
    rng = random.Random(7)
    checked = priced = 0
    for _ in range(4000):
        provider, model = rng.choice(MODELS)
        at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 20 * 86400))
        big = rng.random() < 0.2
        tokens = tuple(rng.randint(0, 400_000 if big else 20_000) for _ in TOKEN_TYPES)
        batch = rng.random() < 0.3
        reference = book.price(
            provider=provider,
            model=model,
            tokens=dict(zip(TOKEN_TYPES, tokens, strict=True)),
            at=at,
            batch=batch,
        )
        fast = pricer.price(provider=provider, model=model, tokens=tokens, at=at, batch=batch)
        checked += 1
        if reference.total_usd is None:
            assert fast is None, (provider, model, at)
            continue
        priced += 1
        assert pico_to_decimal(fast[0]) == reference.total_usd, (provider, model, at, tokens, batch)
        assert [pico_to_decimal(cost) for cost in fast[1:]] == [
            reference.cost_by_type[t] for t in TOKEN_TYPES
        ]
    assert priced > 3000
