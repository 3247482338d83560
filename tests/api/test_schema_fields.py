"""The schema's patterns match exactly what the serializer fields accept."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from rest_framework import serializers

from finops.api.schema import decimal_pattern

DECIMALS = [
    "0",
    "1",
    "-1",
    "1.",
    ".5",
    "-.5",
    "123456",
    "1234567",
    "1.123456",
    "1.1234567",
    "",
    "-",
    ".",
    "0.0",
]


@pytest.mark.parametrize(
    "field",
    [
        serializers.DecimalField(max_digits=12, decimal_places=6),
        serializers.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal(0)),
        serializers.DecimalField(max_digits=4, decimal_places=3),
        serializers.DecimalField(max_digits=3, decimal_places=3),
        serializers.DecimalField(max_digits=5, decimal_places=0),
    ],
    ids=["12,6", "12,6,min 0", "4,3", "3,3", "5,0"],
)
def test_the_decimal_pattern_matches_what_the_field_accepts(field):
    pattern = decimal_pattern(field)
    for text in DECIMALS:
        try:
            field.run_validation(text)
            accepted = True
        except serializers.ValidationError:
            accepted = False
        assert (re.fullmatch(pattern, text) is not None) == accepted, (text, pattern)
