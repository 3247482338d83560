"""Allowance windows are calendar windows in the organisation's time zone: Python's window_bounds and
PostgreSQL's date_trunc (which the writer's counters use) agree, at month ends, across DST changes and
in a zone other than UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from finops.guardrails.windows import window_bounds

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "at", "zone", "start", "end"),
    [
        # a month end in UTC: the last instant of December, then the first of January
        ("month", utc(2026, 12, 31, 23, 59, 59), UTC_ZONE, utc(2026, 12, 1), utc(2027, 1, 1)),
        ("month", utc(2027, 1, 1), UTC_ZONE, utc(2027, 1, 1), utc(2027, 2, 1)),
        ("day", utc(2026, 2, 28, 12), UTC_ZONE, utc(2026, 2, 28), utc(2026, 3, 1)),
        # weeks start on Monday: Thursday 2026-12-03 is in the week of Monday 2026-11-30
        ("week", utc(2026, 12, 3, 10), UTC_ZONE, utc(2026, 11, 30), utc(2026, 12, 7)),
        ("hour", utc(2026, 12, 3, 10, 59, 59), UTC_ZONE, utc(2026, 12, 3, 10), utc(2026, 12, 3, 11)),
        # Berlin (UTC+1 in winter): 23:30 UTC on Dec 31 is already January there
        ("month", utc(2026, 12, 31, 23, 30), BERLIN, utc(2026, 12, 31, 23), utc(2027, 1, 31, 23)),
        ("day", utc(2026, 12, 3, 22, 59), BERLIN, utc(2026, 12, 2, 23), utc(2026, 12, 3, 23)),
        # spring forward, 2026-03-29 02:00 → 03:00: that day is 23 hours long
        ("day", utc(2026, 3, 29, 12), BERLIN, utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),
        ("month", utc(2026, 3, 31, 21, 59), BERLIN, utc(2026, 2, 28, 23), utc(2026, 3, 31, 22)),
        ("week", utc(2026, 3, 29, 12), BERLIN, utc(2026, 3, 22, 23), utc(2026, 3, 29, 22)),
        # fall back, 2026-10-25 03:00 → 02:00: that day is 25 hours long, and 02:00 happens twice
        ("day", utc(2026, 10, 25, 12), BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)),
        ("hour", utc(2026, 10, 25, 0, 30), BERLIN, utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)),  # 02:30 CEST
        ("hour", utc(2026, 10, 25, 1, 30), BERLIN, utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),  # 02:30 CET
    ],
)
def test_window_bounds(window, at, zone, start, end):
    got_start, got_end = window_bounds(window=window, at=at, zone=zone)
    assert (got_start, got_end) == (start, end)
    assert got_start <= at < got_end


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


@pytest.mark.django_db
@pytest.mark.parametrize("zone_name", ZONES)
def test_python_and_postgres_agree_on_every_window_start(zone_name):
    """Every 7 minutes 13 seconds over the 2026 DST changes of both hemispheres and a year end."""
    zone = ZoneInfo(zone_name)
    instants = []
    for first in (utc(2026, 3, 27), utc(2026, 4, 3), utc(2026, 10, 2), utc(2026, 10, 23), utc(2026, 12, 30)):
        instants += [first + timedelta(seconds=433 * step) for step in range(4 * 24 * 3600 // 433)]
    for window in ("hour", "day", "week", "month"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT date_trunc(%s, instant, %s) FROM unnest(%s::timestamptz[]) AS instant",
                [window, zone_name, instants],
            )
            starts = [row[0] for row in cursor.fetchall()]
        expected = [window_bounds(window=window, at=instant, zone=zone)[0] for instant in instants]
        mismatches = [
            (instant, sql, python)
            for instant, sql, python in zip(instants, starts, expected, strict=True)
            if sql != python
        ]
        assert mismatches == [], f"{window} in {zone_name}: {mismatches[:3]}"
