"""Allowance windows: calendar hours, days, weeks (from Monday) and months in the organisation's time
zone (`FINOPS_TIME_ZONE`), never N hours after a first call. One function computes a window's start
and end; the writer's SQL computes the same start with `date_trunc(window, ts, zone)`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

WINDOWS = ("hour", "day", "week", "month")


def org_time_zone() -> ZoneInfo:
    return ZoneInfo(settings.FINOPS_TIME_ZONE)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def window_bounds(*, window: str, at: datetime, zone: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the calendar window in `zone` (the organisation's by default) holding the instant
    `at`, as UTC instants (an aware time in a repeated hour never compares equal to another zone's).
    An hour is a wall-clock hour; in a fall-back change both 02:00 hours are windows of their own, as
    PostgreSQL's date_trunc('hour', ts, zone) keeps them."""
    zone = zone or org_time_zone()
    local = at.astimezone(zone)
    if window == "hour":
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)  # the fold says which 02:00
        return start, start + timedelta(hours=1)
    day = local.date()
    if window == "day":
        first, following = day, day + timedelta(days=1)
    elif window == "week":
        first = day - timedelta(days=day.weekday())
        following = first + timedelta(days=7)
    elif window == "month":
        first = day.replace(day=1)
        following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    else:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    return _local_midnight(first, zone).astimezone(UTC), _local_midnight(following, zone).astimezone(UTC)
