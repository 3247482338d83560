"""Published list prices (USD per MTok), typed in by hand from the providers' pricing pages, so the tests
compare our catalog mapping with an independent source rather than with itself."""

from __future__ import annotations

from decimal import Decimal

TOKEN_TYPES = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")
MTOK = Decimal(1_000_000)

# uncached input, cache read, 5m cache write, 1h cache write, output, reasoning (billed as output)
PUBLISHED_RATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("anthropic", "claude-sonnet-4-5"): ("3", "0.30", "3.75", "6", "15", "15"),
    ("openai", "gpt-4o"): ("2.50", "1.25", "2.50", "2.50", "10", "10"),
}


def published_cost(*, provider: str, model: str, tokens: dict[str, int], batch: bool = False) -> Decimal:
    """Σ tokens × rate / 10⁶ (halved for batch), exact; only for calls under any long-context tier."""
    rates = PUBLISHED_RATES[(provider, model)]
    total = sum(
        (
            Decimal(tokens.get(token_type, 0)) * Decimal(rate) / MTOK
            for token_type, rate in zip(TOKEN_TYPES, rates, strict=True)
        ),
        Decimal(0),
    )
    return total / 2 if batch else total
