"""JSON bodies are read as the schema types them.

DRF's fields coerce: a CharField takes 5 as "5", an IntegerField takes "5" and 5.0, a BooleanField takes
"yes" and 1, a DecimalField takes the binary float 0.1. The schema says `string`, `integer`, `boolean`,
so a client reading it must get a 400 naming the field for a value of another JSON type, not a guess;
and a string PostgreSQL cannot store (a lone surrogate) is a 400 of its field, not a 500.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

# (field class, the JSON types it reads, how the error names them); the first match wins
_JSON_TYPES: list[tuple[type[serializers.Field], tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "a whole number"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (str,), 'a decimal string such as "1.25"'),
    (serializers.DateTimeField, (str,), "an ISO 8601 date-time string"),
    (serializers.DateField, (str,), "an ISO 8601 date string"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.ListField, (list,), "an array"),
]


def json_type_error(field: serializers.Field, value) -> str | None:
    """Why `value` is not of the JSON type `field` reads, or None when it is (null is the field's call)."""
    if value is None:
        return None
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            if isinstance(value, bool) and bool not in types:
                return f"must be {name}, not a boolean"
            if not isinstance(value, types):
                return f"must be {name}"
            if isinstance(value, str) and not _storable_text(value):
                return "must be valid Unicode text: it holds a lone UTF-16 surrogate such as \\ud800"
            return None
    return None


def _storable_text(text: str) -> bool:
    """PostgreSQL text holds any Unicode but a lone UTF-16 surrogate (JSON's "\\ud800" decodes to one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class JsonTypes:
    """Mixin for input serializers: a value of the wrong JSON type is a validation error of its field."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            errors = {}
            for field in self._writable_fields:
                if field.field_name not in data:
                    continue
                value = data[field.field_name]
                error = json_type_error(field, value)
                if error is None and isinstance(field, serializers.ListField) and isinstance(value, list):
                    error = next(filter(None, (json_type_error(field.child, item) for item in value)), None)
                if error:
                    errors[field.field_name] = [error]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
