"""FilterSets of the ingest models (the API and the quarantine page)."""

from __future__ import annotations

from django_filters import rest_framework as filters

from finops.api.filters import StoredTextFilter
from ingest.models import QuarantinedRow


class QuarantinedRowFilter(filters.FilterSet):
    source = StoredTextFilter(help_text="e.g. file:events.jsonl, litellm, api:events")

    class Meta:
        model = QuarantinedRow
        fields = ["source"]
