"""The shape of GET /api/v1/kpis (SPEC.md, "KPIs"): one serializer per part of the answer."""

from __future__ import annotations

from rest_framework import serializers


class KpiScopeSerializer(serializers.Serializer):
    team = serializers.CharField(allow_null=True, help_text="null: every team the caller sees")
    agent = serializers.CharField(allow_null=True, help_text="null: every agent of the scope")

    class Meta:
        ref_name = "KpiScope"


class KpiTasksSerializer(serializers.Serializer):
    ended = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    abandoned = serializers.IntegerField()
    unpriced_calls = serializers.IntegerField(help_text="calls of these tasks with no price yet")

    class Meta:
        ref_name = "KpiTasks"


class TokenCountsSerializer(serializers.Serializer):
    """The six token types of SPEC.md."""

    uncached_input = serializers.IntegerField()
    cache_read = serializers.IntegerField()
    cache_write_5m = serializers.IntegerField()
    cache_write_1h = serializers.IntegerField()
    output = serializers.IntegerField()
    reasoning = serializers.IntegerField()

    class Meta:
        ref_name = "TokenCounts"


class KpisSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    scope = KpiScopeSerializer()
    cost_usd = serializers.CharField(help_text="exact decimal string, to 1e-6 USD")
    calls = serializers.IntegerField()
    unpriced_calls = serializers.IntegerField()
    calls_not_in_task = serializers.IntegerField()
    tasks = KpiTasksSerializer(help_text="the tasks that ended in the window")
    cost_per_successful_task_usd = serializers.CharField(
        allow_null=True, help_text="null: no successful task"
    )
    cache_hit_rate = serializers.FloatField(allow_null=True, help_text="null: no input tokens")
    token_efficiency_index = serializers.FloatField(allow_null=True)
    step_inflation_ratio = serializers.FloatField(allow_null=True, help_text="null: no known ideal")
    tokens = TokenCountsSerializer()

    class Meta:
        ref_name = "Kpis"
