"""POST /api/v1/events and POST /api/v1/tasks (SPEC.md, "Wire contracts")."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
from drf_spectacular.utils import OpenApiExample, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.response import Response

from finops.api.parsers import RAW_BODY_PARSERS, raw_body
from finops.api.permissions import IngestScope
from finops.api.schema import Batch
from finops.api.viewsets import ScopedAPIView
from finops.core.json_depth import MAX_VALUE_DEPTH, JsonTooDeep, json_loads_bounded
from ingest.outcomes import TaskOutcomeSerializer, task_outcomes_ingest
from ingest.quarantine import nonblank_lines
from ingest.serializers import IngestResultSerializer, TaskIngestResultSerializer, UsageEventSerializer
from ingest.writer import events_ingest

EVENTS_SOURCE = "api:events"


class BodyError(ValueError):
    pass


_TOO_DEEP = (
    f"the body is nested too deep to read; an event's JSON values (tags, input_breakdown, tool_calls) "
    f"may nest at most {MAX_VALUE_DEPTH} levels"
)
_split_array = msgspec.json.Decoder(list[msgspec.Raw])
_one_or_many = msgspec.json.Decoder(msgspec.Raw)


def parse_events_body(body: bytes, content_type: str) -> tuple[list[bytes], Sequence[str] | None]:
    """The events of a body, each still JSON (decoded once, by the writer), and for NDJSON their line
    numbers: a JSON array, one JSON object, or NDJSON. A line of NDJSON that is not JSON (or too deep)
    is passed on and rejected like any bad event; a JSON body too deep to split is a BodyError."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        return nonblank_lines(body.splitlines())
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        try:
            _one_or_many.decode(stripped)
        except RecursionError:
            raise BodyError(_TOO_DEEP) from None
        except msgspec.DecodeError as error:
            _lenient_split(stripped, error)  # a BodyError unless only msgspec refuses it
        return [stripped], None
    try:
        return [bytes(raw) for raw in _split_array.decode(body)], None
    except RecursionError:  # msgspec's decoder recurses per level
        raise BodyError(_TOO_DEEP) from None
    except msgspec.ValidationError:
        raise BodyError("the body must be a JSON array of events") from None
    except msgspec.DecodeError as error:
        return _lenient_split(body, error), None


def _lenient_split(body: bytes, error: msgspec.DecodeError) -> list[bytes]:
    """The events of a body msgspec refuses but Python's json reads, each re-encoded as JSON: a lone
    UTF-16 surrogate escape ("\\ud800") anywhere in one event, or NaN, refused the whole batch with a 400
    that called the body malformed; now that event alone is a rejected row (the writer names its field,
    as it does for the same event on an NDJSON line) and the others are kept. A body Python's json
    cannot read either is a BodyError, with msgspec's reason."""
    try:
        decoded = json_loads_bounded(body)
    except JsonTooDeep:
        raise BodyError(_TOO_DEEP) from None
    except ValueError:
        raise BodyError(f"the body is not JSON ({error}); send a JSON array of events or NDJSON") from None
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list):
        raise BodyError("the body must be a JSON array of events")
    return [json.dumps(item).encode() for item in decoded]  # ensure_ascii: a surrogate stays an escape


class EventsView(ScopedAPIView):
    permission_classes = [IngestScope]
    parser_classes = RAW_BODY_PARSERS  # the body is read raw: JSON array or NDJSON, parsed once

    @extend_schema(
        request={
            "application/json": Batch(child=UsageEventSerializer(), or_one=True),
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses={200: IngestResultSerializer},
        examples=[
            OpenApiExample(
                "one event",
                request_only=True,
                value=[
                    {
                        "event_id": "run-42:step-3",
                        "timestamp": "2026-11-02T10:15:00Z",
                        "team": "support",
                        "agent": "ticket-triage",
                        "task_id": "run-42",
                        "step": 3,
                        "provider": "anthropic",
                        "model": "claude-sonnet-4-5",
                        "usage": {"uncached_input": 1200, "cache_read": 38000, "output": 310},
                    }
                ],
            )
        ],
    )
    def post(self, request):
        try:
            rows, positions = parse_events_body(raw_body(request), request.content_type or "")
        except BodyError as error:
            return Response({"message": str(error), "extra": {}}, status=status.HTTP_400_BAD_REQUEST)
        result = events_ingest(
            raw_events=rows, positions=positions, principal=self.principal, source=EVENTS_SOURCE
        )
        return Response(result.as_json())


class TasksView(ScopedAPIView):
    permission_classes = [IngestScope]

    @extend_schema(
        request=Batch(child=TaskOutcomeSerializer()),
        responses={200: TaskIngestResultSerializer},
    )
    def post(self, request):
        if not isinstance(request.data, list):
            return Response(
                {"message": "the body must be a JSON array of task outcomes", "extra": {}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        result = task_outcomes_ingest(raw_outcomes=request.data, principal=self.principal)
        return Response(result.as_json())
