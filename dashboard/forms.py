"""The Overview's filters, read from the query string so a view can be bookmarked and shared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django import forms
from django.core.validators import MaxValueValidator

from finops.kpis.selectors import month_window
from finops.kpis.series import STACK_BY_CHOICES, StackBy

MAX_WINDOW_DAYS = 400  # a year and a bit: longer windows want a monthly chart, not 3,000 daily bars
LAST_DAY = date.max - timedelta(days=1)  # the window's exclusive end, a day later, must still be a date
STACK_BY_LABELS = {"team": "team", "agent": "agent", "model": "model", "token_type": "token type"}


@dataclass(frozen=True)
class OverviewFilters:
    start: date  # first day shown
    end: date  # last day shown (inclusive, as people read a date range)
    team: str | None
    agent: str | None
    stack_by: StackBy

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

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("The end date is before the start date.")
            if (end - start).days + 1 > MAX_WINDOW_DAYS:
                raise forms.ValidationError(f"Choose a window of at most {MAX_WINDOW_DAYS} days.")
        return cleaned


def overview_filters(form: OverviewFilterForm) -> OverviewFilters:
    """The filters to apply: the form's values where valid, the current calendar month otherwise."""
    month_start, month_end = month_window()
    form.is_valid()
    cleaned = {} if form.non_field_errors() else form.cleaned_data
    start = cleaned.get("start") or month_start.date()
    end = cleaned.get("end") or max(start, month_end.date() - timedelta(days=1))
    if end < start:  # only an end given, before the current month: show that end's month
        start = end.replace(day=1)
    if (end - start).days >= MAX_WINDOW_DAYS:  # not min(end, start + …): near date.max that overflows
        end = start + timedelta(days=MAX_WINDOW_DAYS - 1)
    # team and agent come raw, never dropped when invalid: a bad value must 404, not widen the scope
    return OverviewFilters(
        start=start,
        end=end,
        team=(form.data.get("team") or "").strip() or None,
        agent=(form.data.get("agent") or "").strip() or None,
        stack_by=cleaned.get("stack_by") or "team",
    )
