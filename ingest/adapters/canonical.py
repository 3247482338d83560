"""Canonical usage events from JSON lines and from CSV rows (SPEC.md, "Usage event").

CSV columns: the event's scalar fields, the six token types as their own columns, and the JSON columns
input_breakdown, tool_calls and tags holding JSON text. An empty cell means "not given".
"""

from __future__ import annotations

from typing import Any

from finops.core.json_depth import json_loads_bounded
from finops.ledger.tokens import TOKEN_TYPES
from ingest.adapters import AdapterError
from ingest.validation import json_kind

CSV_TEXT_COLUMNS = (
    "event_id",
    "timestamp",
    "team",
    "agent",
    "task_id",
    "provider",
    "model",
    "status",
    "prompt_version",
    "reported_cost_usd",
)
CSV_INT_COLUMNS = ("step", "latency_ms", "max_tokens")
CSV_BOOL_COLUMNS = ("batch",)
CSV_JSON_COLUMNS = ("input_breakdown", "tool_calls", "tags")
CSV_COLUMNS = (
    "event_id",
    "timestamp",
    "team",
    "agent",
    "task_id",
    "step",
    "provider",
    "model",
    *TOKEN_TYPES,
    "batch",
    "latency_ms",
    "status",
    "prompt_version",
    "max_tokens",
    "reported_cost_usd",
    *CSV_JSON_COLUMNS,
)
CSV_REQUIRED_COLUMNS = ("event_id", "timestamp", "team", "agent", "provider", "model")
# cells past the header's end (csv.DictReader puts them under the key None, which JSON cannot hold)
CSV_EXTRA_CELLS = "_extra_cells"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def event_from_json(payload: Any, *, default_team: str | None = None) -> dict[str, Any]:
    """A JSON line as received: already an event (the writer validates it), or text that must parse."""
    if isinstance(payload, str):
        try:
            payload = json_loads_bounded(payload)
        except ValueError as error:
            raise AdapterError({"non_field_errors": [f"not JSON: {error}"]}) from None
    if not isinstance(payload, dict):
        raise AdapterError({"non_field_errors": [f"{json_kind(payload)}, not an event object"]})
    if default_team and not payload.get("team"):
        payload = {**payload, "team": default_team}
    return payload


def csv_header_problems(*, columns: list[str]) -> list[str]:
    """What is wrong with a CSV header, so a file with the wrong columns fails before any row is read."""
    problems = []
    missing = [name for name in CSV_REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}; the columns are {','.join(CSV_COLUMNS)}")
    return problems


def event_from_csv_row(payload: Any, *, default_team: str | None = None) -> dict[str, Any]:
    """A CSV row (column → cell text, as csv.DictReader reads it) as an event dict."""
    if not isinstance(payload, dict):
        raise AdapterError({"non_field_errors": ["a CSV row must be a mapping of column to text"]})
    errors: dict[str, list[str]] = {}
    if payload.get(CSV_EXTRA_CELLS):
        extra = len(payload[CSV_EXTRA_CELLS])
        errors["non_field_errors"] = [f"{extra} more cell(s) than the header has columns"]
    event: dict[str, Any] = {}
    usage: dict[str, int] = {}

    def cell(name: str) -> str:
        value = payload.get(name)
        return value.strip() if isinstance(value, str) else ""

    for name in CSV_TEXT_COLUMNS:
        if cell(name):
            event[name] = cell(name)
    for name in (*CSV_INT_COLUMNS, *TOKEN_TYPES):
        if not cell(name):
            continue
        try:
            number = int(cell(name))
        except ValueError:
            errors.setdefault(name, []).append(f"{cell(name)!r} is not a whole number")
            continue
        if name in TOKEN_TYPES:
            usage[name] = number
        else:
            event[name] = number
    for name in CSV_BOOL_COLUMNS:
        text = cell(name).lower()
        if text in _TRUE:
            event[name] = True
        elif text in _FALSE:
            event[name] = False
        elif text:
            errors.setdefault(name, []).append(f"{cell(name)!r} is not true or false")
    for name in CSV_JSON_COLUMNS:
        if not cell(name):
            continue
        try:
            event[name] = json_loads_bounded(cell(name))
        except ValueError as error:
            errors.setdefault(name, []).append(f"not JSON ({error}); write the cell as JSON text")
    if default_team and "team" not in event:
        event["team"] = default_team
    if errors:
        raise AdapterError(errors, team=event.get("team"))
    event["usage"] = usage
    return event
