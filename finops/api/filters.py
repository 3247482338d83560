"""Filters shared by the API's FilterSets."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.core.validators import ProhibitNullCharactersValidator
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


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


class _UtcIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:  # PostgreSQL reads offsets up to ±15:59 only; ISO 8601 allows ±23:59
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("is outside the calendar once in UTC", code="invalid") from None


class UtcDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared as its UTC instant (any offset ISO allows)."""

    field_class = _UtcIsoDateTimeField
