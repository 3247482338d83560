"""PriceBook.current(): the same book (and its cached rates) while the overrides and discounts are
unchanged, a new one as soon as any row of them changes, so a request never prices with old rates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.services import PriceBook

AT = datetime(2026, 10, 1, 12, tzinfo=UTC)
TOKENS = {"uncached_input": 1_000_000}


def price_of_a_million_input_tokens() -> Decimal | None:
    return (
        PriceBook.current()
        .price(provider="acme", model="acme-1", tokens=TOKENS, at=AT, batch=False)
        .total_usd
    )


@pytest.mark.django_db
def test_the_current_book_follows_every_change_of_overrides_and_discounts():
    assert PriceBook.current() is PriceBook.current()  # nothing changed: the cached book
    assert price_of_a_million_input_tokens() is None  # unknown model: unpriced

    override = ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-1",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("2"),
        output_per_mtok=Decimal("8"),
    )
    assert price_of_a_million_input_tokens() == Decimal("2")

    ModelPriceOverride.objects.filter(pk=override.pk).update(uncached_input_per_mtok=Decimal("2.5"))
    assert price_of_a_million_input_tokens() == Decimal("2.5")  # a rate edited in place

    discount = NegotiatedDiscount.objects.create(
        provider="acme", percent=Decimal("10"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert price_of_a_million_input_tokens() == Decimal("2.25")
    book = PriceBook.current()
    assert PriceBook.current() is book

    discount.delete()
    assert PriceBook.current() is not book
    assert price_of_a_million_input_tokens() == Decimal("2.5")
