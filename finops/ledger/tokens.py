"""The six token types of SPEC.md, in one place."""

from __future__ import annotations

TOKEN_TYPES: tuple[str, ...] = (
    "uncached_input",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
)
INPUT_TOKEN_TYPES: tuple[str, ...] = TOKEN_TYPES[:4]
