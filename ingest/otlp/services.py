"""Ingest one OTLP trace export: map the GenAI spans, write the calls through the one writer, record the
task outcomes, quarantine what was rejected."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from finops.accounts.models import ApiToken
from finops.ledger.services import task_outcomes_record
from ingest.models import QuarantinedRow
from ingest.otlp.mapping import RejectedSpan, spans_map, spans_read
from ingest.writer import Resolver, TeamPolicy, events_ingest

OTLP_SOURCE = "otlp"
SPAN_ADAPTER = "otlp-span"  # quarantined payload is a span, not a canonical event
MAX_REASONS_IN_MESSAGE = 5


@dataclass(frozen=True, slots=True)
class TracesIngestResult:
    accepted_calls: int
    duplicate_calls: int
    recorded_tasks: int
    rejected_spans: int
    error_message: str


def traces_ingest(*, request: ExportTraceServiceRequest, token: ApiToken) -> TracesIngestResult:
    """Write the LLM calls and agent runs of one export. Spans that are not GenAI are ignored."""
    mapped = spans_map(
        spans=spans_read(request=request), default_team=token.team.slug if token.team else None
    )
    resolver = Resolver(TeamPolicy(token))
    reasons: list[str] = []
    quarantine: list[QuarantinedRow] = []
    for rejected in mapped.rejected:
        reasons.append(_reason(event_id=rejected.span.event_id, errors=rejected.errors))
        quarantine.append(_quarantined_span(rejected=rejected, token=token))
    outcomes = []
    for outcome in mapped.outcomes:
        span = outcome.pop("span")
        team_id, team_error = resolver.team_id(outcome["team"])
        if team_error:
            rejected = RejectedSpan(span=span, errors={"team": [team_error]})
            reasons.append(_reason(event_id=span.event_id, errors=rejected.errors))
            quarantine.append(_quarantined_span(rejected=rejected, token=token))
            continue
        outcomes.append(
            {**outcome, "team": resolver.team(team_id), "agent": resolver.agent(team_id, outcome["agent"])}
        )
    with transaction.atomic():
        written = events_ingest(
            raw_events=mapped.events, principal=token, source=OTLP_SOURCE, resolver=resolver
        )
        QuarantinedRow.objects.bulk_create(quarantine)
        task_outcomes_record(outcomes=outcomes)
    for rejected in written.rejected:
        reasons.append(_reason(event_id=rejected["event_id"], errors=rejected["errors"]))
    rejected_spans = len(reasons)
    message = ""
    if reasons:
        shown = "; ".join(reasons[:MAX_REASONS_IN_MESSAGE])
        more = (
            f"; and {rejected_spans - MAX_REASONS_IN_MESSAGE} more"
            if rejected_spans > MAX_REASONS_IN_MESSAGE
            else ""
        )
        message = f"{rejected_spans} span(s) rejected and quarantined: {shown}{more}"
    return TracesIngestResult(
        accepted_calls=written.accepted,
        duplicate_calls=written.duplicates,
        recorded_tasks=len(outcomes),
        rejected_spans=rejected_spans,
        error_message=message,
    )


def _reason(*, event_id: str | None, errors: dict[str, list[str]]) -> str:
    details = ", ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
    return f"{event_id}: {details}"


def _quarantined_span(*, rejected: RejectedSpan, token: ApiToken) -> QuarantinedRow:
    return QuarantinedRow.of(
        source=OTLP_SOURCE,
        adapter=SPAN_ADAPTER,
        position=f"{rejected.span.trace_id}:{rejected.span.span_id}"[:128],
        event_id=rejected.span.event_id,
        payload=rejected.span.as_payload(),
        errors=rejected.errors,
        team_id=token.team_id,  # the resource's team may be one this token is not allowed to write
    )
