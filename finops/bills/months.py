"""Bill months: parsing `YYYY-MM`, their UTC bounds, and which are closed. Every part of bills asks here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import Min
from django.utils import timezone

from finops.bills.models import BillMonth, MonthState
from finops.ledger.models import DailyRollup

MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# the months bills takes, the API's schema and the pages alike: a month's bounds must be dates the
# ledger can hold (year 0 and the end of 9999 are none), and the API has said 1970-01 to 8999-12
FIRST_YEAR, LAST_YEAR = 1970, 8999
MONTH_RANGE_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])$"


class MonthError(ValueError):
    """A month that is not `YYYY-MM`; the message says what was given."""


def month_parse(text: str) -> date:
    """`2026-11` → date(2026, 11, 1); anything else raises MonthError naming the value."""
    match = MONTH_PATTERN.match(text or "")
    if not match:
        raise MonthError(f"month must be YYYY-MM, e.g. 2026-11; got {text!r}")
    year, month = int(match[1]), int(match[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise MonthError(f"month must be between {FIRST_YEAR}-01 and {LAST_YEAR}-12; got {text!r}")
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


@dataclass(frozen=True)
class MonthRow:
    month: date
    state: str
    closed_at: datetime | None
    closed_by: str | None
    reason: str
    ended: bool  # it may be closed (a month that has not ended may not)


def months_listed(*, now: datetime | None = None) -> list[MonthRow]:
    """Every month from the first with telemetry (or a state of its own) to the current one, newest
    first, with its state: the Months page's and GET /api/v1/months' list (two queries)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    current = month_of(today)
    rows = {row.month: row for row in BillMonth.objects.select_related("closed_by")}
    first_day = DailyRollup.objects.aggregate(first=Min("day"))["first"]
    first = min([current, *rows, *([month_of(first_day)] if first_day else [])])
    months, month = [], first
    while month <= max([current, *rows]):
        months.append(month)
        month = month_next(month)
    listed = []
    for month in reversed(months):
        row = rows.get(month)
        closed = row is not None and row.state == MonthState.CLOSED
        listed.append(
            MonthRow(
                month=month,
                state=MonthState.CLOSED if closed else MonthState.OPEN,
                closed_at=row.closed_at if closed else None,
                closed_by=row.closed_by.get_username() if closed and row.closed_by else None,
                reason=row.reason if row else "",
                ended=month_next(month) <= today,
            )
        )
    return listed
