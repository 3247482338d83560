"""Pricing on the bulk path, in integer picodollars (1e-12 USD), with rates cached per model and day.

Gives exactly the numbers of `PriceBook.price` (the reference, in Decimal): the same rational
tokens × rate × discount multiplier, rounded half-even to 1e-12 USD per token type. It only caches
what is constant over a UTC day; a model whose price changes within the day (a time-of-day price, an
override or discount starting mid-day, a rate with more than six decimals) is priced by the reference
for that day's calls.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from genai_prices.types import TieredPrices, TimeOfDateConstraint

from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.catalog import catalog_model
from finops.pricing.services import BATCH_DISCOUNT, DEFAULT_BATCH_DISCOUNT, PriceBook

PICO_PER_USD = 10**12
PICO = Decimal("1e-12")

# (total_pico, cost of each of the six token types in pico) or None when unpriced
assert len(TOKEN_TYPES) == 6, "PicoPricer.price is unrolled for six token types"
PicoCost = tuple[int, int, int, int, int, int, int] | None


class _DayRates:
    """Integer rates for one model, batch flag and UTC day: per input tier, six (numerator) rates."""

    __slots__ = ("thresholds", "numerators", "denominator")

    def __init__(self, thresholds: tuple[int, ...], numerators: list[tuple[int, ...]], denominator: int):
        self.thresholds = thresholds  # tier i+1 applies when total input > thresholds[i]
        self.numerators = numerators
        self.denominator = denominator


_UNPRICED = object()
_VARIES = object()


class PicoPricer:
    def __init__(self, price_book: PriceBook) -> None:
        self.price_book = price_book
        self._days: dict[tuple[str, str, bool, date], object] = {}

    def price(
        self, *, provider: str, model: str, tokens: tuple[int, ...], at: datetime, batch: bool
    ) -> PicoCost:
        """Cost of one call; `tokens` in TOKEN_TYPES order, `at` timezone-aware."""
        day = at.astimezone(UTC).date() if at.tzinfo is not UTC else at.date()
        key = (provider, model, batch, day)
        rates = self._days.get(key)
        if rates is None:
            rates = self._days[key] = self._day_rates(provider, model, batch, day)
        if rates is _UNPRICED:
            return None
        if rates is _VARIES:
            return self._reference(provider, model, tokens, at, batch)
        numerators = rates.numerators[0]
        if rates.thresholds:
            total_input = tokens[0] + tokens[1] + tokens[2] + tokens[3]
            for index, start in enumerate(rates.thresholds):
                if total_input > start:
                    numerators = rates.numerators[index + 1]
        denominator = rates.denominator
        if denominator == 1:  # no discount: whole picodollars per token (unrolled: this runs per row)
            c0, c1, c2, c3, c4, c5 = (
                tokens[0] * numerators[0],
                tokens[1] * numerators[1],
                tokens[2] * numerators[2],
                tokens[3] * numerators[3],
                tokens[4] * numerators[4],
                tokens[5] * numerators[5],
            )
            return (c0 + c1 + c2 + c3 + c4 + c5, c0, c1, c2, c3, c4, c5)
        costs = [
            _divide_half_even(count * rate, denominator)
            for count, rate in zip(tokens, numerators, strict=True)
        ]
        return (sum(costs), *costs)

    def _reference(self, provider, model, tokens, at, batch) -> PicoCost:
        priced = self.price_book.price(
            provider=provider,
            model=model,
            tokens=dict(zip(TOKEN_TYPES, tokens, strict=True)),
            at=at,
            batch=batch,
        )
        if not priced.priced:
            return None
        costs = [int(priced.cost_by_type[token_type] / PICO) for token_type in TOKEN_TYPES]
        return (sum(costs), *costs)

    def _day_rates(self, provider: str, model: str, batch: bool, day: date) -> object:
        book = self.price_book
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        if not self._constant_over(provider, model, start, end):
            return _VARIES
        thresholds = self._tier_thresholds(provider, model, start)
        numerators: list[tuple[int, ...]] = []
        batch_discount = BATCH_DISCOUNT.get(provider.lower(), DEFAULT_BATCH_DISCOUNT) if batch else Decimal(0)
        multiplier = (1 - batch_discount) * (1 - book.discount_percent(provider, start) / 100)
        multiplier_numerator, denominator = multiplier.as_integer_ratio()
        for total_input in (0, *(threshold + 1 for threshold in thresholds)):
            found = book.rates(provider, model, start, total_input)
            if found is None:
                return _UNPRICED
            rates, _ = found
            tier = []
            for token_type in TOKEN_TYPES:
                rate_pico = rates[token_type] * 1_000_000  # $/MTok → picodollars per token
                if rate_pico != rate_pico.to_integral_value():
                    return _VARIES  # more than six decimals: leave it to the Decimal reference
                tier.append(int(rate_pico) * multiplier_numerator)
            numerators.append(tuple(tier))
        return _DayRates(thresholds, numerators, denominator)

    def _constant_over(self, provider: str, model: str, start: datetime, end: datetime) -> bool:
        book = self.price_book
        for moment in _change_points(book, provider, model):
            if start < moment < end:
                return False
        entry = None if book.override_at(provider, model, start) else catalog_model(provider.lower(), model)
        if entry is not None and not isinstance(entry.info.prices, type(entry.info.get_prices(start))):
            for conditional in entry.info.prices:
                if isinstance(conditional.constraint, TimeOfDateConstraint):
                    return False
        return True

    def _tier_thresholds(self, provider: str, model: str, at: datetime) -> tuple[int, ...]:
        if self.price_book.override_at(provider, model, at) is not None:
            return ()
        entry = catalog_model(provider.lower(), model)
        if entry is None:
            return ()
        price = entry.info.get_prices(at)
        starts = {
            tier.start
            for value in vars(price).values()
            if isinstance(value, TieredPrices)
            for tier in value.tiers
        }
        return tuple(sorted(starts))


def _change_points(book: PriceBook, provider: str, model: str) -> list[datetime]:
    points = [override.effective_from for override in book.overrides_for(provider, model)]
    for discount in book.discounts_for(provider):
        points.append(discount.effective_from)
        if discount.effective_to:
            points.append(discount.effective_to)
    return points


def _divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def pico_to_decimal(value: int) -> Decimal:
    return Decimal(value).scaleb(-12)
