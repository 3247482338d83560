"""The model-tier mapping and the usage per model and tier, in the API.

`/api/v1/model-tiers`: the mapping, read by every principal with `read`, changed by the people who may
(finops/modeltiers/models.py: admin, finops, and the ml role of any team; never a token), audited.
`/api/v1/models/usage`: the Models page's numbers, from the same selector.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers
from rest_framework.response import Response

from finops.accounts.selectors import principal_may_edit_model_tiers
from finops.api.fields import JsonTypes
from finops.api.permissions import ReadOrManageScope, ReadScope
from finops.api.viewsets import ScopedAPIView, TeamScopedViewSet
from finops.kpis.api import money, ratio
from finops.kpis.selectors import month_window
from finops.kpis.series import scope_for_principal
from finops.modeltiers.models import ModelTier, Tier
from finops.modeltiers.selectors import (
    FLAGSHIP_SHARE_TARGET,
    TIERS,
    ModelUsage,
    UsageTotals,
    model_tier_taken,
    model_usage,
)
from finops.modeltiers.services import model_tier_create, model_tier_delete, model_tier_update

EDITORS = "the admin or finops role, or the ml role in a team (API tokens never change the mapping)"


class ModelTierSerializer(JsonTypes, serializers.ModelSerializer):
    provider = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    model = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$", max_length=128)
    tier = serializers.ChoiceField(choices=Tier.choices)

    class Meta:
        model = ModelTier
        fields = ["id", "provider", "model", "tier", "updated_at"]
        read_only_fields = ["id", "updated_at"]

    def validate(self, attrs):
        provider = attrs.get("provider", getattr(self.instance, "provider", "")).lower()
        model = attrs.get("model", getattr(self.instance, "model", "")).lower()
        if model_tier_taken(provider=provider, model=model, other_than=self.instance):
            raise serializers.ValidationError(
                {"model": [f"{provider}/{model} is mapped already: change that row"]}
            )
        return attrs


class ModelTierViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    """The model-tier mapping (organisation-wide: a model is the same tier for every team). Changed by
    the admin or finops role, or the ml role in any team; every change is in the audit log."""

    queryset = ModelTier.objects.all()
    serializer_class = ModelTierSerializer
    permission_classes = [ReadOrManageScope]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        if not principal_may_edit_model_tiers(principal=self.principal):
            raise exceptions.PermissionDenied(f"changing the model-tier mapping needs {EDITORS}")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model_tier = model_tier_create(principal=self.principal, **serializer.validated_data)
        return Response(self.get_serializer(model_tier).data, status=201)

    def partial_update(self, request, *args, **kwargs):
        model_tier = self.get_object()
        serializer = self.get_serializer(model_tier, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        model_tier = model_tier_update(
            principal=self.principal, model_tier=model_tier, changes=dict(serializer.validated_data)
        )
        return Response(self.get_serializer(model_tier).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        model_tier_delete(principal=self.principal, model_tier=self.get_object())
        return Response(status=204)


class ModelUsageQuery(serializers.Serializer):
    start = serializers.DateField(required=False, help_text="first UTC day (default: this month's first)")
    end = serializers.DateField(
        required=False, help_text="the UTC day after the last one, after start (default: next month's first)"
    )
    team = serializers.SlugField(required=False)
    agent = serializers.CharField(required=False, help_text="only with team: agent names are per team")

    def validate(self, attrs):
        default_start, default_end = month_window()
        attrs.setdefault("start", default_start.date())
        attrs.setdefault("end", default_end.date())
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["must be after start"]})
        if attrs.get("agent") and not attrs.get("team"):
            raise serializers.ValidationError({"agent": ["give team too: agent names are per team"]})
        return attrs


class UsageTotalsSerializer(serializers.Serializer):
    calls = serializers.IntegerField()
    unpriced_calls = serializers.IntegerField(help_text="counted, but not in cost_usd (cost unknown)")
    tokens = serializers.IntegerField(help_text="all six token types")
    cost_usd = serializers.CharField(
        allow_null=True,
        help_text="priced calls, exact decimal string to 1e-6 USD; null when none of the calls is priced",
    )

    class Meta:
        ref_name = "UsageTotals"


class ModelUsageRowSerializer(UsageTotalsSerializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    tier = serializers.ChoiceField(choices=list(TIERS), help_text="unmapped: no row of the mapping names it")
    share_of_calls = serializers.FloatField(allow_null=True)
    share_of_tokens = serializers.FloatField(allow_null=True)
    share_of_cost = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "ModelUsageRow"


class TierUsageSerializer(UsageTotalsSerializer):
    tier = serializers.ChoiceField(choices=list(TIERS))
    share_of_calls = serializers.FloatField(allow_null=True)
    share_of_tokens = serializers.FloatField(allow_null=True)
    share_of_cost = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "TierUsage"


class ModelUsageSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField(help_text="exclusive")
    scope = serializers.DictField()
    flagship_share_of_calls = serializers.FloatField(
        allow_null=True, help_text="flagship calls ÷ every call (unmapped included); null: no calls"
    )
    flagship_share_target = serializers.FloatField(help_text="the target: below this share")
    total = UsageTotalsSerializer()
    tiers = TierUsageSerializer(many=True)
    models = ModelUsageRowSerializer(many=True)

    class Meta:
        ref_name = "ModelUsage"


def _totals_json(totals: UsageTotals) -> dict:
    return {
        "calls": totals.calls,
        "unpriced_calls": totals.unpriced_calls,
        "tokens": totals.tokens,
        "cost_usd": None if totals.known_cost_usd is None else money(totals.known_cost_usd),
    }


def _shares_json(totals: UsageTotals, whole: UsageTotals) -> dict:
    def share(part, all_of):
        return ratio(part / all_of) if all_of else None

    return {
        "share_of_calls": share(totals.calls, whole.calls),
        "share_of_tokens": share(totals.tokens, whole.tokens),
        "share_of_cost": None if totals.known_cost_usd is None else share(totals.cost_usd, whole.cost_usd),
    }


def model_usage_json(usage: ModelUsage, *, team: str | None, agent: str | None) -> dict:
    return {
        "start": usage.start.isoformat(),
        "end": usage.end.isoformat(),
        "scope": {"team": team, "agent": agent},
        "flagship_share_of_calls": ratio(usage.flagship_share),
        "flagship_share_target": FLAGSHIP_SHARE_TARGET,
        "total": _totals_json(usage.total),
        "tiers": [
            {"tier": tier, **_totals_json(totals), **_shares_json(totals, usage.total)}
            for tier, totals in usage.tiers.items()
        ],
        "models": [
            {
                "provider": row.provider,
                "model": row.model,
                "tier": row.tier,
                **_totals_json(row.totals),
                **_shares_json(row.totals, usage.total),
            }
            for row in usage.models
        ],
    }


class ModelUsageView(ScopedAPIView):
    """GET /api/v1/models/usage: calls, tokens and priced spend per model and tier over whole UTC days
    [start, end), with the share of calls on flagship models against its target (the Models page)."""

    permission_classes = [ReadScope]

    @extend_schema(parameters=[ModelUsageQuery], responses=ModelUsageSerializer)
    def get(self, request):
        query = ModelUsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        scope = scope_for_principal(
            principal=self.principal, team_slug=params.get("team"), agent_name=params.get("agent")
        ).scope
        usage = model_usage(scope=scope, start=params["start"], end=params["end"], by_day=False)
        return Response(model_usage_json(usage, team=params.get("team"), agent=params.get("agent")))
