"""Shapes of the ingest API's bodies and answers (SPEC.md, "Wire contracts"), one serializer per shape.

The usage event itself is validated by ingest.validation on the bulk path; `UsageEventSerializer` only
documents it in the schema.
"""

from __future__ import annotations

from rest_framework import serializers

from finops.api.fields import JsonTypes
from ingest.validation import MAX_TEXT


class UsageSerializer(serializers.Serializer):
    uncached_input = serializers.IntegerField(min_value=0, required=False)
    cache_read = serializers.IntegerField(min_value=0, required=False)
    cache_write_5m = serializers.IntegerField(min_value=0, required=False)
    cache_write_1h = serializers.IntegerField(min_value=0, required=False)
    output = serializers.IntegerField(min_value=0, required=False)
    reasoning = serializers.IntegerField(min_value=0, required=False)

    class Meta:
        ref_name = "Usage"


class UsageEventSerializer(serializers.Serializer):
    """One LLM call. Required: event_id, timestamp, team, agent, provider, model, usage."""

    event_id = serializers.CharField(max_length=MAX_TEXT["event_id"], help_text="the idempotency key")
    timestamp = serializers.DateTimeField()
    team = serializers.SlugField(max_length=MAX_TEXT["team"])
    agent = serializers.CharField(max_length=MAX_TEXT["agent"])
    task_id = serializers.CharField(max_length=MAX_TEXT["task_id"], required=False, allow_null=True)
    step = serializers.IntegerField(required=False, allow_null=True)
    provider = serializers.CharField(max_length=MAX_TEXT["provider"])
    model = serializers.CharField(max_length=MAX_TEXT["model"])
    usage = UsageSerializer(help_text="missing token fields are 0")
    input_breakdown = serializers.DictField(child=serializers.IntegerField(), required=False, allow_null=True)
    batch = serializers.BooleanField(required=False)
    latency_ms = serializers.IntegerField(required=False, allow_null=True)
    status = serializers.CharField(max_length=MAX_TEXT["status"], required=False)
    prompt_version = serializers.CharField(
        max_length=MAX_TEXT["prompt_version"], required=False, allow_null=True
    )
    max_tokens = serializers.IntegerField(required=False, allow_null=True)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True)
    reported_cost_usd = serializers.CharField(required=False, allow_null=True, help_text="a decimal string")
    tags = serializers.DictField(required=False, allow_null=True)

    class Meta:
        ref_name = "UsageEvent"


class LiteLLMPayloadSerializer(serializers.Serializer):
    """The fields finops reads of LiteLLM's StandardLoggingPayload (its generic API logger's body)."""

    id = serializers.CharField(required=False, help_text="LiteLLM's call id: the event_id")
    call_type = serializers.CharField(required=False)
    model = serializers.CharField(required=False)
    custom_llm_provider = serializers.CharField(required=False)
    prompt_tokens = serializers.IntegerField(required=False)
    completion_tokens = serializers.IntegerField(required=False)
    response_cost = serializers.FloatField(required=False, allow_null=True)
    startTime = serializers.FloatField(required=False, help_text="unix seconds")  # noqa: N815 - LiteLLM's name
    endTime = serializers.FloatField(required=False, help_text="unix seconds")  # noqa: N815
    metadata = serializers.DictField(
        required=False, help_text="user_api_key_team_alias and the like name the team"
    )

    class Meta:
        ref_name = "LiteLLMPayload"


class RejectedRowSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="the row's place in the batch, from 0")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="messages per field"
    )


class RejectedEventSerializer(RejectedRowSerializer):
    event_id = serializers.JSONField(allow_null=True, help_text="the event_id as sent, if the row had one")

    class Meta:
        ref_name = "RejectedEvent"


class RejectedTaskSerializer(RejectedRowSerializer):
    task_id = serializers.JSONField(allow_null=True, help_text="the task_id as sent, if the row had one")

    class Meta:
        ref_name = "RejectedTask"


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = RejectedEventSerializer(many=True)

    class Meta:
        ref_name = "IngestResult"


class TaskIngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = RejectedTaskSerializer(many=True)

    class Meta:
        ref_name = "TaskIngestResult"


class QuarantinedRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    team = serializers.CharField(source="team.slug", allow_null=True, help_text="null: the team was unknown")
    position = serializers.CharField()
    event_id = serializers.CharField()
    adapter = serializers.CharField()
    payload = serializers.JSONField()
    errors = serializers.JSONField()
    created_at = serializers.DateTimeField()
    replayed_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "QuarantinedRow"


class ReplayRequestSerializer(JsonTypes, serializers.Serializer):
    # what validate() asks, for the schema: some ids, or a source
    schema_rules = {
        "anyOf": [
            {"required": ["ids"], "properties": {"ids": {"minItems": 1}}},
            {"required": ["source"], "properties": {"source": {"minLength": 1}}},
        ]
    }

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, max_length=100_000
    )
    source = serializers.CharField(required=False, max_length=64)

    class Meta:
        ref_name = "ReplayRequest"

    def validate(self, attrs):
        if not attrs.get("ids") and not attrs.get("source"):
            raise serializers.ValidationError('send {"ids": [...]} or {"source": "..."}')
        return attrs


class ReplayResultSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    still_rejected = serializers.IntegerField()

    class Meta:
        ref_name = "ReplayResult"
