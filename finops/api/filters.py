"""Filters shared by the API's FilterSets."""

from __future__ import annotations

from django import forms
from django.core.validators import ProhibitNullCharactersValidator
from django_filters import rest_framework as filters


class _AnyTextField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [
            validator
            for validator in self.validators
            if not isinstance(validator, ProhibitNullCharactersValidator)
        ]


class StoredTextFilter(filters.CharFilter):
    """Equality with a stored text. Postgres text cannot hold NUL, so a value holding one matches
    nothing (rather than a query that fails, or a 400 for a question with a plain answer)."""

    field_class = _AnyTextField

    def filter(self, queryset, value):
        if value and "\x00" in value:
            return queryset.none()
        return super().filter(queryset, value)
