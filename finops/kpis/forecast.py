"""Month-end spend forecast: the one function the `forecast` alert (finops.alerts.evaluate) and the
Forecast page both use, so the number an alert fires on is the number the page shows.

The month is the calendar month in the organisation's time zone (FINOPS_TIME_ZONE), as every month
window of the alerts and allowances is (finops.guardrails.windows). Sums come from the rollups through
finops.alerts.readings.call_sums_by_agent (whole UTC days from the daily rollups, partial days from the
minute rollup), never from the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from finops.alerts.readings import Range, call_sums_by_agent
from finops.guardrails.windows import window_bounds
from finops.kpis.selectors import Scope
from finops.ledger.rollups import minute_of

TRAILING_DAYS = 7
BAND_WIDTH = Decimal(2)  # standard deviations either side: roughly a 95% band
SECONDS_A_DAY = Decimal(86_400)


@dataclass(frozen=True)
class ForecastWindow:
    """The spans a forecast at `now` reads. `end` is the end of the current minute (so far, it is in),
    as the alert evaluation's windows end."""

    now: datetime
    end: datetime
    month: Range  # the month so far: [month start, end)
    month_end: datetime
    week: Range  # the trailing 7 days: [end - 7 days, end)
    days: tuple[Range, ...]  # the 7 whole UTC days before today's, for the band

    @property
    def days_left(self) -> Decimal:
        """Days (fractional) from `end` to the month's end; never negative."""
        return max(Decimal(int((self.month_end - self.end).total_seconds())) / SECONDS_A_DAY, Decimal(0))

    def ranges(self) -> list[Range]:
        return [self.month, self.week, *self.days]


def forecast_window(*, now: datetime) -> ForecastWindow:
    end = minute_of(now) + timedelta(minutes=1)
    month_start, month_end = window_bounds(window="month", at=now)
    today = datetime.combine(end.astimezone(UTC).date(), time(0), tzinfo=UTC)  # the days before: whole
    days = tuple(
        (today - timedelta(days=back), today - timedelta(days=back - 1))
        for back in range(TRAILING_DAYS, 0, -1)
    )
    return ForecastWindow(
        now=now,
        end=end,
        month=(month_start, end),
        month_end=month_end,
        week=(end - timedelta(days=TRAILING_DAYS), end),
        days=days,
    )


@dataclass(frozen=True)
class Forecast:
    to_date_usd: Decimal  # the month so far
    daily_rate_usd: Decimal  # the trailing 7 days' mean
    days_left: Decimal
    projected_usd: Decimal
    low_usd: Decimal
    high_usd: Decimal
    daily_spread_usd: Decimal  # the standard deviation of the 7 whole days' spend


def month_end_forecast(
    *, to_date: Decimal, last_week: Decimal, daily: list[Decimal], days_left: Decimal
) -> Forecast:
    """Month-end spend: the month-to-date spend plus the trailing 7 days' mean daily spend times the
    days left. The band: with s the sample standard deviation of the spend of the 7 whole UTC days
    before today, the d days left add spend whose standard deviation is about s·√(d + d²/7) (each day
    varying by s, and the 7-day mean itself uncertain by s/√7 on every day left); the band is the
    projection ± 2 of those, its low end never below what is already spent."""
    rate = last_week / TRAILING_DAYS
    projected = to_date + rate * days_left
    spread = margin = Decimal(0)
    if len(daily) > 1:
        mean = sum(daily, Decimal(0)) / len(daily)
        spread = (sum(((day - mean) ** 2 for day in daily), Decimal(0)) / (len(daily) - 1)).sqrt()
        margin = BAND_WIDTH * spread * (days_left + days_left * days_left / len(daily)).sqrt()
    return Forecast(
        to_date_usd=to_date,
        daily_rate_usd=rate,
        days_left=days_left,
        projected_usd=projected,
        low_usd=max(projected - margin, to_date),
        high_usd=projected + margin,
        daily_spread_usd=spread,
    )


def forecast_from_sums(window: ForecastWindow, cost_of: dict[Range, Decimal]) -> Forecast:
    """The forecast from the priced spend of each of the window's ranges."""
    return month_end_forecast(
        to_date=cost_of[window.month],
        last_week=cost_of[window.week],
        daily=[cost_of[day] for day in window.days],
        days_left=window.days_left,
    )


def forecasts_by_team(*, scope: Scope, team_ids: list[int], now: datetime) -> dict[int, Forecast]:
    """Each team's forecast at `now`, over the agents of `scope` (all of the team's without agent ids):
    two grouped queries on the rollups for every team at once."""
    window = forecast_window(now=now)
    ranges = window.ranges()
    sums = call_sums_by_agent(ranges=ranges)
    costs: dict[int, dict[Range, Decimal]] = {
        team_id: dict.fromkeys(ranges, Decimal(0)) for team_id in team_ids
    }
    for span, by_agent in zip(ranges, sums, strict=True):
        for (team_id, agent_id), totals in by_agent.items():
            if team_id in costs and (scope.agent_ids is None or agent_id in scope.agent_ids):
                costs[team_id][span] += totals["cost_usd"]
    return {team_id: forecast_from_sums(window, cost_of) for team_id, cost_of in costs.items()}


def month_bounds(month: date) -> Range:
    """[start, end) of the calendar month holding `month` in the organisation's time zone (its 15th at
    noon UTC is in that month in every zone)."""
    return window_bounds(window="month", at=datetime.combine(month.replace(day=15), time(12), tzinfo=UTC))
