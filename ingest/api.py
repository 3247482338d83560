"""POST /api/v1/events and POST /api/v1/tasks (SPEC.md, "Wire contracts")."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from drf_spectacular.utils import OpenApiExample, OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from finops.api.permissions import IngestScope
from finops.api.schema import Batch
from finops.ledger.models import TaskStatus
from finops.ledger.services import task_outcomes_record
from ingest.quarantine import nonblank_lines
from ingest.serializers import IngestResultSerializer, TaskIngestResultSerializer, UsageEventSerializer
from ingest.writer import Resolver, TeamPolicy, events_ingest

EVENTS_SOURCE = "api:events"


class BodyError(ValueError):
    pass


_split_array = msgspec.json.Decoder(list[msgspec.Raw])
_one_or_many = msgspec.json.Decoder(msgspec.Raw)


def parse_events_body(body: bytes, content_type: str) -> tuple[list[bytes], Sequence[str] | None]:
    """The events of a body, each still JSON (decoded once, by the writer), and for NDJSON their line
    numbers: a JSON array, one JSON object, or NDJSON. A line of NDJSON that is not JSON is passed on
    and rejected like any bad event."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        return nonblank_lines(body.splitlines())
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        try:
            _one_or_many.decode(stripped)
        except msgspec.DecodeError as error:
            raise BodyError(
                f"the body is not JSON ({error}); send a JSON array of events or NDJSON"
            ) from None
        return [stripped], None
    try:
        return [bytes(raw) for raw in _split_array.decode(body)], None
    except msgspec.ValidationError:
        raise BodyError("the body must be a JSON array of events") from None
    except msgspec.DecodeError as error:
        raise BodyError(f"the body is not JSON ({error}); send a JSON array of events or NDJSON") from None


class EventsView(APIView):
    permission_classes = [IngestScope]
    parser_classes: list = []  # the body is read raw: JSON array or NDJSON, parsed once

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
            rows, positions = parse_events_body(request.body, request.content_type or "")
        except BodyError as error:
            return Response({"message": str(error), "extra": {}}, status=status.HTTP_400_BAD_REQUEST)
        result = events_ingest(
            raw_events=rows, positions=positions, principal=request.auth or request.user, source=EVENTS_SOURCE
        )
        return Response(result.as_json())


class TaskOutcomeSerializer(serializers.Serializer):
    task_id = serializers.CharField(max_length=256)
    team = serializers.CharField(max_length=64)
    agent = serializers.CharField(max_length=128)
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    ideal_steps = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)
    task_type = serializers.CharField(max_length=128, required=False, allow_blank=True)
    tags = serializers.DictField(required=False)

    def validate_tags(self, tags: dict) -> dict:
        if _holds_nul(tags):  # Postgres jsonb cannot hold NUL: one such task would fail the whole batch
            raise serializers.ValidationError("tags may not contain NUL characters")
        return tags

    def validate(self, attrs):
        if attrs["ended_at"] < attrs["started_at"]:
            raise serializers.ValidationError({"ended_at": ["must not be before started_at"]})
        return attrs


class TasksView(APIView):
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
        resolver = Resolver(TeamPolicy(request.auth or request.user))
        outcomes, rejected = [], []
        for index, raw in enumerate(request.data):
            serializer = TaskOutcomeSerializer(data=raw)
            if not serializer.is_valid():
                rejected.append(
                    {"index": index, "task_id": _get(raw, "task_id"), "errors": serializer.errors}
                )
                continue
            outcome = dict(serializer.validated_data)
            team_id, team_error = resolver.team_id(outcome["team"])
            if team_error:
                rejected.append(
                    {"index": index, "task_id": outcome["task_id"], "errors": {"team": [team_error]}}
                )
                continue
            outcome["team"] = resolver.team(team_id)
            outcome["agent"] = resolver.agent(team_id, outcome["agent"])
            outcomes.append(outcome)
        task_outcomes_record(outcomes=outcomes)
        return Response({"accepted": len(outcomes), "duplicates": 0, "rejected": rejected})


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _get(raw, key):
    return raw.get(key) if isinstance(raw, dict) else None
