"""A quarantined OpenTelemetry span (ingest.otlp's SpanRecord.as_payload) → a canonical event, for replay.

The span is mapped alone, so it keeps no task link it had through its agent span; the event keeps its
event_id ("resp:<response id>", else "otlp:<trace>:<span>"), so a call that was written meanwhile, from this
span or another report of it, comes back as a duplicate."""

from __future__ import annotations

from typing import Any

from ingest.adapters import AdapterError


def event_from_otlp_span(payload: Any, *, default_team: str | None = None) -> dict[str, Any]:
    from ingest.otlp.mapping import SpanRecord, spans_map

    if not isinstance(payload, dict) or "span_id" not in payload:
        raise AdapterError({"non_field_errors": ["not a quarantined span; resend the trace instead"]})
    try:
        span = SpanRecord(
            trace_id=payload["trace_id"],
            span_id=payload["span_id"],
            parent_span_id=payload.get("parent_span_id", ""),
            name=payload.get("name", ""),
            start_time_unix_nano=int(payload["start_time_unix_nano"]),
            end_time_unix_nano=int(payload["end_time_unix_nano"]),
            is_error=bool(payload.get("is_error")),
            attributes=payload.get("attributes") or {},
            resource_attributes=payload.get("resource_attributes") or {},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AdapterError({"non_field_errors": [f"the quarantined span is incomplete ({error})"]}) from None
    mapped = spans_map(spans=[span], default_team=default_team)
    if mapped.rejected:
        raise AdapterError(mapped.rejected[0].errors, team=span.resource_attributes.get("finops.team"))
    if not mapped.events:
        raise AdapterError(
            {"non_field_errors": ["only LLM-call spans are replayed; resend the trace for agent runs"]}
        )
    return mapped.events[0]
