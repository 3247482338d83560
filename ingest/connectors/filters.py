"""FilterSets of the statement lines (the API, and later the bill pages and CSV export)."""

from __future__ import annotations

from django import forms
from django_filters import rest_framework as filters

from finops.api.filters import StoredTextFilter, UtcDateTimeFilter
from ingest.connectors.models import Provider, StatementLine


class StatementLineForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end <= start:
            raise forms.ValidationError({"end": ["must be after start"]})
        return cleaned


class StatementLineFilter(filters.FilterSet):
    """Lines whose bucket starts in [start, end), of one provider or source."""

    provider = filters.ChoiceFilter(choices=Provider.choices)
    start = UtcDateTimeFilter(
        field_name="period_start", lookup_expr="gte", help_text="buckets starting at or after"
    )
    end = UtcDateTimeFilter(field_name="period_start", lookup_expr="lt", help_text="buckets starting before")
    source = StoredTextFilter(help_text="e.g. openai_costs:3")

    class Meta:
        model = StatementLine
        fields = ["provider", "start", "end", "source"]
        form = StatementLineForm
