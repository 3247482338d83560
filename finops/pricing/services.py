"""Pricing a call: Σ tokens(type) × rate(type) / 10⁶, then the batch discount, then the negotiated one.

A `PriceBook` holds the organisation's overrides and discounts in memory (they are small tables), so the
bulk writer prices a million calls without a query per call. Exact decimals throughout.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection

from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.catalog import catalog_model
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount

MTOK = Decimal(1_000_000)
# PriceBook.current(): the contents of both tables, as _CONTENTS_SQL reads them, and the book built from them
_current: tuple[tuple, PriceBook] | None = None
# every row of both tables as text, in id order: equal exactly when nothing in them has changed
_CONTENTS_SQL = "SELECT " + ", ".join(
    f"(SELECT coalesce(array_agg(entry ORDER BY entry.id)::text, '') FROM {model._meta.db_table} AS entry)"
    for model in (ModelPriceOverride, NegotiatedDiscount)
)
STORED_PLACES = Decimal("1e-12")  # the ledger keeps 12 decimal places of a dollar
# Both OpenAI's and Anthropic's batch APIs bill at half the standard rate.
BATCH_DISCOUNT = {"openai": Decimal("0.5"), "anthropic": Decimal("0.5"), "google": Decimal("0.5")}
DEFAULT_BATCH_DISCOUNT = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class PriceLine:
    token_type: str
    tokens: int
    rate_per_mtok: Decimal
    amount_usd: Decimal  # before discounts


@dataclass(frozen=True, slots=True)
class PricedCall:
    """A priced call. `total_usd` is None when the model is unknown: unpriced, never zero."""

    total_usd: Decimal | None
    cost_by_type: dict[str, Decimal] = field(default_factory=dict)  # after discounts, sums to total
    lines: tuple[PriceLine, ...] = ()
    source: str | None = None  # "catalog:<provider>/<model id>" or "override:<id>"
    batch_discount: Decimal = Decimal(0)
    negotiated_discount_percent: Decimal = Decimal(0)

    @property
    def priced(self) -> bool:
        return self.total_usd is not None

    def as_json(self) -> dict:
        return {
            "total_usd": None if self.total_usd is None else decimal_text(self.total_usd),
            "priced": self.priced,
            "source": self.source,
            "batch_discount": decimal_text(self.batch_discount),
            "negotiated_discount_percent": decimal_text(self.negotiated_discount_percent),
            "lines": [
                {
                    "token_type": line.token_type,
                    "tokens": line.tokens,
                    "rate_per_mtok": decimal_text(line.rate_per_mtok),
                    "amount_usd": decimal_text(line.amount_usd),
                    "cost_usd": decimal_text(self.cost_by_type[line.token_type]),
                }
                for line in self.lines
            ],
        }


UNPRICED = PricedCall(total_usd=None)


def decimal_text(value: Decimal) -> str:
    """An exact decimal as plain text: 0.0018, 0, 1200 — never 0E-12 or 1.2E+3."""
    return format(value.normalize(), "f")


class PriceBook:
    """Overrides and discounts as of load time. Load one per batch; it does not watch the tables."""

    def __init__(self, overrides: list[ModelPriceOverride], discounts: list[NegotiatedDiscount]) -> None:
        self._overrides: dict[tuple[str, str], tuple[list[datetime], list[ModelPriceOverride]]] = {}
        grouped: dict[tuple[str, str], list[ModelPriceOverride]] = defaultdict(list)
        for override in overrides:
            grouped[(override.provider.lower(), override.model.lower())].append(override)
        for key, items in grouped.items():
            items.sort(key=lambda item: item.effective_from)
            self._overrides[key] = ([item.effective_from for item in items], items)
        self._discounts = sorted(discounts, key=lambda item: item.effective_from, reverse=True)

    @classmethod
    def load(cls) -> PriceBook:
        return cls(list(ModelPriceOverride.objects.all()), list(NegotiatedDiscount.objects.all()))

    @classmethod
    def current(cls) -> PriceBook:
        """The price book as the database holds it now: the one built before (with what it has cached,
        such as the bulk pricer's per-day rates) while every override and discount row is unchanged,
        column for column; a new one once any has changed. For callers that price a batch a request:
        one query instead of loading both tables (two ORM queries cost more than the SQL)."""
        global _current
        with connection.cursor() as cursor:
            cursor.execute(_CONTENTS_SQL)
            contents = cursor.fetchone()
        cached = _current
        if cached is not None and cached[0] == contents:
            return cached[1]
        book = cls.load()  # after reading the contents: a change in between only means a new book again
        _current = (contents, book)
        return book

    def override_at(self, provider: str, model: str, at: datetime) -> ModelPriceOverride | None:
        entry = self._overrides.get((provider.lower(), model.lower()))
        if entry is None:
            return None
        starts, items = entry
        index = bisect.bisect_right(starts, at) - 1
        return items[index] if index >= 0 else None

    def overrides_for(self, provider: str, model: str) -> list[ModelPriceOverride]:
        entry = self._overrides.get((provider.lower(), model.lower()))
        return entry[1] if entry else []

    def discounts_for(self, provider: str) -> list[NegotiatedDiscount]:
        """The discounts that may apply to a provider: its own and the all-provider ones."""
        return [
            item for item in self._discounts if not item.provider or item.provider.lower() == provider.lower()
        ]

    def discount_percent(self, provider: str, at: datetime) -> Decimal:
        """The provider's own discount if one is in force, else an all-provider one, else 0."""
        best: NegotiatedDiscount | None = None
        for discount in self._discounts:
            if discount.effective_from > at or (discount.effective_to and discount.effective_to <= at):
                continue
            if discount.provider.lower() == provider.lower():
                return discount.percent
            if not discount.provider and best is None:
                best = discount
        return best.percent if best else Decimal(0)

    def rates(self, provider: str, model: str, at: datetime, total_input: int) -> tuple[dict, str] | None:
        override = self.override_at(provider, model, at)
        if override is not None:
            input_rate = override.uncached_input_per_mtok
            return (
                {
                    "uncached_input": input_rate,
                    "cache_read": _or(override.cache_read_per_mtok, input_rate),
                    "cache_write_5m": _or(override.cache_write_5m_per_mtok, input_rate),
                    "cache_write_1h": _or(override.cache_write_1h_per_mtok, input_rate),
                    "output": override.output_per_mtok,
                    "reasoning": _or(override.reasoning_per_mtok, override.output_per_mtok),
                },
                f"override:{override.pk}",
            )
        entry = catalog_model(provider.lower(), model)
        if entry is None:
            return None
        try:
            rates = entry.rates(at=at, total_input_tokens=total_input)
        except LookupError:  # e.g. an embedding model has no output price: unpriced, never a guess of 0
            return None
        return rates, f"catalog:{entry.provider_id}/{entry.model_id}"

    def price(
        self, *, provider: str, model: str, tokens: dict[str, int], at: datetime, batch: bool
    ) -> PricedCall:
        total_input = sum(tokens.get(token_type, 0) for token_type in INPUT_TOKEN_TYPES)
        found = self.rates(provider, model, at, total_input)
        if found is None:
            return UNPRICED
        rates, source = found
        batch_discount = BATCH_DISCOUNT.get(provider.lower(), DEFAULT_BATCH_DISCOUNT) if batch else Decimal(0)
        discount_percent = self.discount_percent(provider, at)
        multiplier = (1 - batch_discount) * (1 - discount_percent / 100)
        lines = []
        cost_by_type = {}
        for token_type in TOKEN_TYPES:
            count = tokens.get(token_type, 0)
            amount = count * rates[token_type] / MTOK
            lines.append(PriceLine(token_type, count, rates[token_type], amount))
            cost_by_type[token_type] = (amount * multiplier).quantize(STORED_PLACES, ROUND_HALF_EVEN)
        return PricedCall(
            total_usd=sum(cost_by_type.values(), Decimal(0)),
            cost_by_type=cost_by_type,
            lines=tuple(lines),
            source=source,
            batch_discount=batch_discount,
            negotiated_discount_percent=discount_percent,
        )


def _or(value: Decimal | None, fallback: Decimal) -> Decimal:
    return fallback if value is None else value


def call_price(
    *, provider: str, model: str, tokens: dict[str, int], at: datetime, batch: bool = False
) -> PricedCall:
    """Price one call against the current price book (one-off use; the writer keeps its own book)."""
    return PriceBook.load().price(provider=provider, model=model, tokens=tokens, at=at, batch=batch)
