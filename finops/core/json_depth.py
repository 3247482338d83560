"""How deep outside JSON may nest. Python's json and msgspec recurse once per level and stop with a
RecursionError near 1,000 levels (fewer inside a deep call stack), and PostgreSQL's jsonb parser has a
stack limit of its own: deeper input is refused, with these limits in the error, before any of them
reads it."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_VALUE_DEPTH = 64  # a stored JSON value: an event's tags, input_breakdown, tool_calls; a task's tags
MAX_DOCUMENT_DEPTH = 128  # a body, line or stored payload: room for the envelope around such values

# a JSON string (escapes included), removed before the brackets are counted
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class JsonTooDeep(ValueError):
    def __init__(self, limit: int = MAX_DOCUMENT_DEPTH) -> None:
        super().__init__(
            f"nested more than {limit} levels deep; JSON values (such as tags) may nest at most "
            f"{MAX_VALUE_DEPTH} levels"
        )


def too_deep_message(depth: int) -> str:
    """Why a JSON value `depth` levels deep (see `value_depth`) is refused."""
    return f"nested {depth} levels deep; JSON values may nest at most {MAX_VALUE_DEPTH} levels"


def text_depth_exceeds(text: bytes | bytearray | memoryview | str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than `limit` deep, read without recursion.
    Counting the brackets answers most texts at C speed; only one with more than `limit` of them is
    walked. Brackets in an unterminated string count: such a text is not JSON anyway."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", data)):
        if bracket in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def value_depth(value: Any) -> int:
    """How many levels of arrays and objects a decoded JSON value nests (a scalar 0, {} 1), counted
    without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_loads_bounded(
    text: bytes | bytearray | str, *, limit: int = MAX_DOCUMENT_DEPTH, **options: Any
) -> Any:
    """json.loads, refusing (JsonTooDeep, a ValueError) a text nested more than `limit` deep."""
    if text_depth_exceeds(text, limit):
        raise JsonTooDeep(limit)
    return json.loads(text, **options)


class BoundedJSONDecoder(json.JSONDecoder):
    """For a JSONField that may hold a value stored before depth was checked: one too deep to decode is
    read as its JSON text (a string) instead of failing every read of its row."""

    def decode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        if text_depth_exceeds(text, MAX_DOCUMENT_DEPTH):
            return text
        return super().decode(text, *args, **kwargs)
