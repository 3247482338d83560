"""JSON depth, read without recursion: brackets inside strings do not count, and the limits hold exactly."""

from __future__ import annotations

import json

import pytest

from finops.core.json_depth import (
    BoundedJSONDecoder,
    JsonTooDeep,
    json_loads_bounded,
    text_depth_exceeds,
    value_depth,
)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[[["]', 1),  # brackets in strings, also after an escaped quote
        ('[{"a": "]]]]"}, [[]]]', 3),
        ("[" * 5000 + "]" * 5000, 5000),
    ],
)
def test_text_depth_is_exceeded_exactly_past_the_depth(text, depth):
    assert text_depth_exceeds(text, depth) is False
    assert text_depth_exceeds(text.encode(), depth - 1) is (depth > 0)


def test_value_depth_counts_arrays_and_objects_without_recursion():
    deep = leaf = []
    for _ in range(9999):
        leaf.append([])
        leaf = leaf[0]
    assert (value_depth(7), value_depth({}), value_depth({"a": [1, {"b": 2}]})) == (0, 1, 3)
    assert value_depth(deep) == 10_000


def test_bounded_loads_refuse_deep_text_and_the_decoder_reads_it_as_text():
    deep = "[" * 200 + "]" * 200
    with pytest.raises(JsonTooDeep, match="nested more than 128 levels deep"):
        json_loads_bounded(deep)
    assert json_loads_bounded("[" * 128 + "]" * 128) is not None
    assert json.loads(deep, cls=BoundedJSONDecoder) == deep
    assert json.loads('{"a": [1]}', cls=BoundedJSONDecoder) == {"a": [1]}
