"""The Overview's filters, read from the query string so a view can be bookmarked and shared."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django import forms
from django.core.validators import MaxValueValidator

from finops.kpis.series import STACK_BY_CHOICES, StackBy

MAX_WINDOW_DAYS = 400  # a year and a bit: longer windows want a monthly chart, not 3,000 daily bars
LAST_DAY = date.max - timedelta(days=1)  # the window's exclusive end, a day later, must still be a date
STACK_BY_LABELS = {"team": "team", "agent": "agent", "model": "model", "token_type": "token type"}
DEFAULT_PERIOD = "30d"
PERIODS = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "this_month": "This month",
    "last_month": "Last month",
    "90d": "Last 90 days",
}


def period_window(period: str, *, today: date) -> tuple[date, date]:
    """A preset's first and last day (inclusive), in UTC calendar days; trailing periods end today."""
    if period.endswith("d"):
        return today - timedelta(days=int(period[:-1]) - 1), today
    month_start = today.replace(day=1)
    if period == "this_month":
        return month_start, today
    if period == "last_month":
        last_month_end = month_start - timedelta(days=1)
        return last_month_end.replace(day=1), last_month_end
    raise ValueError(f"period must be one of {', '.join(PERIODS)}")


@dataclass(frozen=True)
class OverviewFilters:
    start: date  # first day shown
    end: date  # last day shown (inclusive, as people read a date range)
    team: str | None
    agent: str | None
    stack_by: StackBy
    period: str | None = None  # the preset shown, None when the dates were chosen
    # what was shown instead of each invalid value, in words, beside the form's error for it
    fallbacks: list[str] = field(default_factory=list)

    @property
    def end_exclusive(self) -> date:
        return self.end + timedelta(days=1)


class OverviewFilterForm(forms.Form):
    start = forms.DateField(required=False, label="From", validators=[MaxValueValidator(LAST_DAY)])
    end = forms.DateField(required=False, label="To (inclusive)", validators=[MaxValueValidator(LAST_DAY)])
    team = forms.SlugField(required=False)
    agent = forms.CharField(required=False, max_length=128)
    stack_by = forms.ChoiceField(
        required=False, choices=[(choice, STACK_BY_LABELS[choice]) for choice in STACK_BY_CHOICES]
    )
    period = forms.ChoiceField(required=False, choices=list(PERIODS.items()))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("The end date is before the start date.")
            if (end - start).days + 1 > MAX_WINDOW_DAYS:
                raise forms.ValidationError(f"Choose a window of at most {MAX_WINDOW_DAYS} days.")
        return cleaned


def overview_filters(form: OverviewFilterForm, *, today: date | None = None) -> OverviewFilters:
    """The filters to apply: a preset `period`, else the form's dates, else the last 30 days. Each
    invalid value is replaced, and `fallbacks` says by what, so the page can say it beside the error."""
    today = today or datetime.now(UTC).date()
    form.is_valid()
    cleaned = form.cleaned_data
    fallbacks = []
    period = cleaned.get("period") or None
    dates_valid = not (form.has_error("start") or form.has_error("end") or form.non_field_errors())
    if period is None and dates_valid and (cleaned.get("start") or cleaned.get("end")):
        start, end = cleaned.get("start"), cleaned.get("end")
        if start is None:  # only an end: the 30 days up to it
            start = end - timedelta(days=29)
        end = end or max(start, today)
        if (end - start).days >= MAX_WINDOW_DAYS:  # not min(end, start + …): near date.max that overflows
            end = start + timedelta(days=MAX_WINDOW_DAYS - 1)
        # dates that are a preset's window show as that preset (the form sends dates, not the preset)
        period = next((name for name in PERIODS if period_window(name, today=today) == (start, end)), None)
    else:
        if period is None:
            period = DEFAULT_PERIOD
            if form.has_error("period"):
                fallbacks.append(f"Showing the {PERIODS[period].lower()} instead of that period.")
            elif not dates_valid:
                fallbacks.append(f"Showing the {PERIODS[period].lower()} instead of those dates.")
        start, end = period_window(period, today=today)
    stack_by = cleaned.get("stack_by") or "team"
    if form.has_error("stack_by"):
        fallbacks.append("Stacked by team instead.")
    # team and agent come raw, never dropped when invalid: a bad value must 404, not widen the scope
    return OverviewFilters(
        start=start,
        end=end,
        team=(form.data.get("team") or "").strip() or None,
        agent=(form.data.get("agent") or "").strip() or None,
        stack_by=stack_by,
        period=period,
        fallbacks=fallbacks,
    )
