"""GET /api/v1/kpis (SPEC.md)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from finops.api.permissions import ReadScope
from finops.api.viewsets import ScopedAPIView
from finops.kpis.selectors import Kpis, kpis_for_scope, month_window
from finops.kpis.serializers import KpisSerializer
from finops.kpis.series import scope_for_principal
from finops.ledger.tokens import TOKEN_TYPES

MICRO = Decimal("0.000001")


def money(value: Decimal | None) -> str | None:
    """Money on the wire: a decimal string exact to 1e-6 USD."""
    return None if value is None else str(value.quantize(MICRO, ROUND_HALF_EVEN))


def ratio(value: Decimal | float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class KpiQuery(serializers.Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False, help_text="after start")
    team = serializers.SlugField(required=False)
    agent = serializers.CharField(required=False, help_text="only with team: agent names are per team")

    def validate(self, attrs):
        default_start, default_end = month_window()
        attrs.setdefault("start", default_start)
        attrs.setdefault("end", default_end)
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["must be after start"]})
        if attrs.get("agent") and not attrs.get("team"):
            raise serializers.ValidationError({"agent": ["give team too: agent names are per team"]})
        return attrs


def kpis_as_json(kpis: Kpis, *, team: str | None, agent: str | None) -> dict:
    return {
        "start": kpis.start.isoformat().replace("+00:00", "Z"),
        "end": kpis.end.isoformat().replace("+00:00", "Z"),
        "scope": {"team": team, "agent": agent},
        "cost_usd": money(kpis.cost_usd),
        "calls": kpis.calls,
        "unpriced_calls": kpis.unpriced_calls,
        "calls_not_in_task": kpis.calls_not_in_task,
        "tasks": {
            "ended": kpis.tasks_ended,
            "successful": kpis.tasks_successful,
            "failed": kpis.tasks_failed,
            "abandoned": kpis.tasks_abandoned,
            "killed": kpis.tasks_killed,
            "unpriced_calls": kpis.tasks_unpriced_calls,
        },
        "cost_per_successful_task_usd": money(kpis.cost_per_successful_task_usd),
        "cache_hit_rate": ratio(kpis.cache_hit_rate),
        "token_efficiency_index": ratio(kpis.token_efficiency_index),
        "step_inflation_ratio": ratio(kpis.step_inflation_ratio),
        "tokens": {token_type: kpis.tokens[token_type] for token_type in TOKEN_TYPES},
    }


class KpisView(ScopedAPIView):
    permission_classes = [ReadScope]

    @extend_schema(
        parameters=[KpiQuery],
        responses=KpisSerializer,
    )
    def get(self, request):
        query = KpiQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        scope = scope_for_principal(
            principal=self.principal,
            team_slug=params.get("team"),
            agent_name=params.get("agent"),
        ).scope
        kpis = kpis_for_scope(scope=scope, start=params["start"], end=params["end"])
        return Response(kpis_as_json(kpis, team=params.get("team"), agent=params.get("agent")))
