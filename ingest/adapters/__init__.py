"""Adapters: one per outside shape, each a pure function from a row as received to a canonical usage
event dict (SPEC.md, "Usage event"). They only translate; ingest/writer.py validates, prices and writes.

ADAPTERS names each one, so a quarantined row records how to turn its payload into an event again when
it is replayed after a fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

RESPONSE_EVENT_ID_PREFIX = "resp:"
# printable ASCII, no spaces; shorter ids are not unique enough (Ollama answers chatcmpl-0 … chatcmpl-998)
_RESPONSE_ID = re.compile(r"[\x21-\x7e]{16,200}")


class AdapterError(ValueError):
    """The row cannot be translated. `errors` has the writer's shape: field → list of reasons.
    `team` is the team the row names, when it names one, so its quarantined copy is shown to that team."""

    def __init__(self, errors: dict[str, list[str]], *, team: str | None = None) -> None:
        super().__init__("; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in errors.items()))
        self.errors = errors
        self.team = team


def response_event_id(response_id: Any) -> str | None:
    """The event_id of a call identified by its provider's response id (OpenAI `chatcmpl-…`, Anthropic
    `msg_…`), or None when the value cannot serve as one. Every source that knows the response id (OTLP
    spans of any instrumentation, LiteLLM) uses this, so one call reported twice is written once."""
    if isinstance(response_id, str) and _RESPONSE_ID.fullmatch(response_id):
        return f"{RESPONSE_EVENT_ID_PREFIX}{response_id}"
    return None


# adapter(payload, default_team=slug or None) -> event dict; default_team is the team of a team-bound
# token, used when the payload names none
Adapter = Callable[..., dict[str, Any]]


@cache
def _adapters() -> dict[str, Adapter]:
    from ingest.adapters.canonical import event_from_csv_row, event_from_json
    from ingest.adapters.litellm import event_from_litellm_payload
    from ingest.adapters.otlp_span import event_from_otlp_span

    return {
        "events": event_from_json,
        "events-csv": event_from_csv_row,
        "litellm": event_from_litellm_payload,
        "otlp-span": event_from_otlp_span,
    }


def adapter_for(*, name: str) -> Adapter:
    adapters = _adapters()
    if name not in adapters:
        raise KeyError(f"no adapter named {name!r}; known: {', '.join(sorted(adapters))}")
    return adapters[name]
