"""Bill months: parsing `YYYY-MM`, their UTC bounds, and which are closed. Every part of bills asks here."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from finops.bills.models import BillMonth, MonthState

MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class MonthError(ValueError):
    """A month that is not `YYYY-MM`; the message says what was given."""


def month_parse(text: str) -> date:
    """`2026-11` → date(2026, 11, 1); anything else raises MonthError naming the value."""
    match = MONTH_PATTERN.match(text or "")
    if not match:
        raise MonthError(f"month must be YYYY-MM, e.g. 2026-11; got {text!r}")
    year, month = int(match[1]), int(match[2])
    if not 1 <= year <= 9998:  # a month's bounds are dates: year 0 and the end of 9999 are none
        raise MonthError(f"month must be between 0001-01 and 9998-12; got {text!r}")
    return date(year, month, 1)


def month_next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's [start, end) instants in UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    following = month_next(month)
    return start, datetime(following.year, following.month, 1, tzinfo=UTC)


def month_of(day: date | datetime) -> date:
    """The bill month an instant (taken in UTC) or a UTC day belongs to."""
    if isinstance(day, datetime):
        day = day.astimezone(UTC).date()
    return date(day.year, day.month, 1)


def months_closed() -> set[date]:
    """The months closed now (first days)."""
    return set(BillMonth.objects.filter(state=MonthState.CLOSED).values_list("month", flat=True))


def month_is_closed(month: date) -> bool:
    return BillMonth.objects.filter(month=month, state=MonthState.CLOSED).exists()
