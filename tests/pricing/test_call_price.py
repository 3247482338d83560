"""Pricing one call: the six token types against genai-prices' own calc_price, history, batch, discounts,
overrides, unpriced models, and exact decimals throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.services import PricedCall, call_price
from tests.pricing.published import published_cost

AT = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)

SMALL_CALL = {
    "uncached_input": 1200,
    "cache_read": 38000,
    "cache_write_5m": 500,
    "cache_write_1h": 700,
    "output": 310,
    "reasoning": 90,
}
# 213,000 input tokens: past the 200k long-context tier of Claude Sonnet 4.5 and Gemini 2.5 Pro
LONG_CONTEXT_CALL = {
    "uncached_input": 150_000,
    "cache_read": 60_000,
    "cache_write_5m": 1000,
    "cache_write_1h": 2000,
    "output": 5000,
    "reasoning": 1000,
}
REASONING_ONLY = {"uncached_input": 10, "reasoning": 7000}


def genai_total(*, provider: str, model: str, tokens: dict[str, int], at: datetime) -> Decimal:
    """The same call priced by genai-prices itself.

    genai-prices counts usage as a tree: input_tokens is the total input, with cache_read_tokens and
    cache_write_tokens inside it, and cache_write_5m/1h_tokens inside cache_write_tokens; output_tokens
    includes output_reasoning_tokens. Children without a price of their own fall back to their parent.
    """
    usage = Usage(
        input_tokens=sum(tokens.get(token_type, 0) for token_type in INPUT_TOKEN_TYPES),
        cache_read_tokens=tokens.get("cache_read", 0),
        cache_write_tokens=tokens.get("cache_write_5m", 0) + tokens.get("cache_write_1h", 0),
        cache_write_5m_tokens=tokens.get("cache_write_5m", 0),
        cache_write_1h_tokens=tokens.get("cache_write_1h", 0),
        output_tokens=tokens.get("output", 0) + tokens.get("reasoning", 0),
        output_reasoning_tokens=tokens.get("reasoning", 0),
    )
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=at).total_price


def assert_exact(priced: PricedCall) -> None:
    """No binary float anywhere in a priced call."""
    assert type(priced.total_usd) is Decimal
    assert all(type(value) is Decimal for value in priced.cost_by_type.values())
    for line in priced.lines:
        assert type(line.tokens) is int
        assert type(line.rate_per_mtok) is Decimal
        assert type(line.amount_usd) is Decimal
    assert type(priced.batch_discount) is Decimal
    assert type(priced.negotiated_discount_percent) is Decimal
    assert sum(priced.cost_by_type.values(), Decimal(0)) == priced.total_usd


MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-5"),
    ("openai", "o3"),
    ("google", "gemini-2.5-pro"),
]


@pytest.mark.parametrize(("provider", "model"), MODELS)
@pytest.mark.parametrize(
    "tokens", [SMALL_CALL, LONG_CONTEXT_CALL, REASONING_ONLY], ids=["small", "long", "reasoning"]
)
def test_six_token_types_match_genai_prices(db, provider, model, tokens):
    priced = call_price(provider=provider, model=model, tokens=tokens, at=AT)

    assert priced.priced
    assert priced.total_usd == genai_total(provider=provider, model=model, tokens=tokens, at=AT)
    assert [line.token_type for line in priced.lines] == list(TOKEN_TYPES)
    assert_exact(priced)


def test_long_context_tier_doubles_sonnet_input_and_raises_output(db):
    small = call_price(provider="anthropic", model="claude-sonnet-4-5", tokens=SMALL_CALL, at=AT)
    long = call_price(provider="anthropic", model="claude-sonnet-4-5", tokens=LONG_CONTEXT_CALL, at=AT)

    small_rates = {line.token_type: line.rate_per_mtok for line in small.lines}
    long_rates = {line.token_type: line.rate_per_mtok for line in long.lines}
    assert small_rates == {
        "uncached_input": Decimal("3"),
        "cache_read": Decimal("0.3"),
        "cache_write_5m": Decimal("3.75"),
        "cache_write_1h": Decimal("6"),
        "output": Decimal("15"),
        "reasoning": Decimal("15"),
    }
    assert long_rates["uncached_input"] == Decimal("6")
    assert long_rates["output"] == Decimal("22.5")


def test_small_call_matches_hand_typed_published_rates(db):
    priced = call_price(provider="anthropic", model="claude-sonnet-4-5", tokens=SMALL_CALL, at=AT)

    assert priced.total_usd == published_cost(
        provider="anthropic", model="claude-sonnet-4-5", tokens=SMALL_CALL
    )


def test_historical_price_is_the_one_in_force_at_the_call(db):
    # OpenAI cut o3's price from $10/$40 to $2/$8 per MTok on 2025-06-10; genai-prices keeps both
    tokens = {"uncached_input": 1_000_000, "output": 1_000_000}
    before = call_price(provider="openai", model="o3", tokens=tokens, at=datetime(2025, 6, 9, 23, tzinfo=UTC))
    after = call_price(provider="openai", model="o3", tokens=tokens, at=datetime(2025, 6, 10, 1, tzinfo=UTC))

    assert before.total_usd == Decimal("50")
    assert after.total_usd == Decimal("10")
    for at, priced in (
        (datetime(2025, 6, 9, 23, tzinfo=UTC), before),
        (datetime(2025, 6, 10, 1, tzinfo=UTC), after),
    ):
        assert priced.total_usd == genai_total(provider="openai", model="o3", tokens=tokens, at=at)


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_batch_costs_exactly_half(db, provider, model):
    standard = call_price(provider=provider, model=model, tokens=SMALL_CALL, at=AT)
    batch = call_price(provider=provider, model=model, tokens=SMALL_CALL, at=AT, batch=True)

    assert batch.batch_discount == Decimal("0.5")
    assert batch.total_usd == standard.total_usd / 2
    assert_exact(batch)


def test_negotiated_discount_provider_specific_beats_all_providers_within_its_dates(db):
    NegotiatedDiscount.objects.create(
        provider="", percent=Decimal("5"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )
    NegotiatedDiscount.objects.create(
        provider="anthropic",
        percent=Decimal("12.5"),
        effective_from=datetime(2026, 10, 1, tzinfo=UTC),
        effective_to=datetime(2026, 11, 1, tzinfo=UTC),
    )
    tokens = {"uncached_input": 100_000}  # $0.30 at list price (under the 200k tier)

    def price(provider: str, model: str, at: datetime) -> PricedCall:
        return call_price(provider=provider, model=model, tokens=tokens, at=at)

    in_october = price("anthropic", "claude-sonnet-4-5", datetime(2026, 10, 15, tzinfo=UTC))
    assert in_october.negotiated_discount_percent == Decimal("12.5")
    assert in_october.total_usd == Decimal("0.2625")
    # effective_to is exclusive: from November the all-provider 5% applies again
    in_november = price("anthropic", "claude-sonnet-4-5", datetime(2026, 11, 1, tzinfo=UTC))
    assert in_november.total_usd == Decimal("0.285")
    # before either discount started: list price
    assert price("anthropic", "claude-sonnet-4-5", datetime(2025, 12, 31, tzinfo=UTC)).total_usd == Decimal(
        "0.3"
    )
    # another provider only ever gets the all-provider discount ($0.25 list)
    assert price("openai", "gpt-4o", datetime(2026, 10, 15, tzinfo=UTC)).total_usd == Decimal("0.2375")


def test_batch_and_negotiated_discounts_compound(db):
    NegotiatedDiscount.objects.create(
        provider="openai", percent=Decimal("10"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )

    priced = call_price(provider="openai", model="gpt-4o", tokens={"output": 1_000_000}, at=AT, batch=True)

    assert priced.total_usd == Decimal("10") * Decimal("0.5") * Decimal("0.9")


def test_override_beats_catalog_only_from_its_effective_date(db):
    ModelPriceOverride.objects.create(
        provider="openai",
        model="gpt-4o",
        effective_from=datetime(2026, 6, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal("2"),
        output_per_mtok=Decimal("8"),
        cache_read_per_mtok=Decimal("0.5"),
    )
    tokens = {
        "uncached_input": 1_000_000,
        "cache_read": 1_000_000,
        "cache_write_5m": 1_000_000,
        "output": 1_000_000,
        "reasoning": 1_000_000,
    }

    before = call_price(
        provider="openai", model="gpt-4o", tokens=tokens, at=datetime(2026, 5, 31, 23, 59, tzinfo=UTC)
    )
    after = call_price(provider="openai", model="gpt-4o", tokens=tokens, at=datetime(2026, 6, 1, tzinfo=UTC))

    assert before.source == "catalog:openai/gpt-4o"
    assert before.total_usd == published_cost(provider="openai", model="gpt-4o", tokens=tokens)
    assert after.source.startswith("override:")
    # empty cache-write rate falls back to the input rate, empty reasoning rate to the output rate
    assert after.total_usd == Decimal("2") + Decimal("0.5") + Decimal("2") + Decimal("8") + Decimal("8")
    assert_exact(after)


def test_unknown_model_is_unpriced_never_zero(db):
    priced = call_price(provider="acme", model="acme-large-2", tokens=SMALL_CALL, at=AT)

    assert priced.total_usd is None
    assert not priced.priced
    assert priced.lines == ()
    assert priced.as_json()["total_usd"] is None


def test_a_catalog_model_without_an_output_price_is_unpriced_not_an_error(db):
    # embedding models have an input price only
    priced = call_price(provider="openai", model="text-embedding-3-small", tokens=SMALL_CALL, at=AT)

    assert priced.total_usd is None
