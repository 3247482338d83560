"""Per-MTok rates for the six token types, from the genai-prices catalog bundled with the package.

The catalog is read from the installed package only (never updated over the network at run time), so
a given finops version prices the same call the same way on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from finops.ledger.tokens import TOKEN_TYPES

# For each token type, the catalog price keys to try in order; the last one is the fallback
# (a model without a cache-read price bills cached tokens at the input rate).
_PRICE_KEYS: dict[str, tuple[str, ...]] = {
    "uncached_input": ("input_mtok",),
    "cache_read": ("cache_read_mtok", "input_mtok"),
    "cache_write_5m": ("cache_write_5m_mtok", "cache_write_mtok", "input_mtok"),
    "cache_write_1h": ("cache_write_1h_mtok", "cache_write_mtok", "input_mtok"),
    "output": ("output_mtok",),
    "reasoning": ("output_reasoning_mtok", "output_mtok"),
}


@dataclass(frozen=True, slots=True)
class CatalogModel:
    provider_id: str
    model_id: str
    info: ModelInfo

    def rates(self, *, at: datetime, total_input_tokens: int) -> dict[str, Decimal]:
        """Rates per MTok in force at `at`; tiered rates are chosen by the call's total input tokens."""
        price = self.info.get_prices(at)
        return {
            token_type: _resolve(price, keys, total_input_tokens) for token_type, keys in _PRICE_KEYS.items()
        }


def _resolve(price: ModelPrice, keys: tuple[str, ...], total_input_tokens: int) -> Decimal:
    for key in keys:
        value = getattr(price, key, None)
        if value is None:
            continue
        if isinstance(value, TieredPrices):
            # same rule as genai-prices: the highest tier whose start the total input exceeds
            rate = value.base
            for tier in reversed(value.tiers):
                if total_input_tokens > tier.start:
                    rate = tier.price
                    break
            return rate
        return value
    return Decimal(0) if keys[0] == "output_reasoning_mtok" else _missing(keys)


def _missing(keys: tuple[str, ...]) -> Decimal:
    raise LookupError(f"catalog has no {keys[0]} price")


@lru_cache(maxsize=4096)
def catalog_model(provider: str, model: str) -> CatalogModel | None:
    """The catalog entry for a provider and model name, or None when the catalog does not know it."""
    snapshot = data_snapshot.get_snapshot()
    try:
        provider_info, model_info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    if getattr(model_info.get_prices(datetime.now().astimezone()), "input_mtok", None) is None:
        return None  # not a token-priced model (image, audio, per-request): we cannot price its tokens
    return CatalogModel(provider_id=provider_info.id, model_id=model_info.id, info=model_info)


assert set(_PRICE_KEYS) == set(TOKEN_TYPES)
