"""The organisation's prices in the API: price overrides, negotiated discounts, and the re-pricing runs
their changes queue (issue 10, point 5).

`/api/v1/price-overrides`, `/api/v1/discounts`: read by the admin and finops roles and org-wide `read`
tokens; changed by people with the admin or finops role only (never a token: SPEC.md, roles), each
change audited; a write's answer names the re-pricing run it queued (`reprice_run`).
`/api/v1/reprice-runs`: the runs, newest first; one run with its before/after per team, model and day.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from finops.api.fields import JsonTypes
from finops.api.pagination import PageNumberPagination
from finops.api.permissions import BillingChange, BillingRead
from finops.api.viewsets import TeamScopedViewSet
from finops.pricing.models import RATE, ModelPriceOverride, NegotiatedDiscount, RepriceDelta, RepriceRun
from finops.pricing.prices import (
    discount_create,
    discount_delete,
    discount_update,
    price_override_create,
    price_override_delete,
    price_override_taken,
    price_override_update,
)

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"


class PricesRead(BillingRead):
    """People with the admin or finops role, or an org-wide token with the 'read' scope."""

    message = "Prices and discounts are organisation billing data: only the admin and finops roles see them."


class PricesChange(BillingChange):
    message = "Only people with the admin or finops role change prices and discounts; API tokens may not."


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


class RateField(serializers.DecimalField):
    """A rate in USD per million tokens: a decimal string, at most six decimals."""

    def __init__(self, **kwargs):
        super().__init__(**RATE, min_value=Decimal(0), coerce_to_string=True, **kwargs)

    def to_representation(self, value):
        return _money(value)


class PricesViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    create_service = update_service = delete_service = staticmethod(lambda **kwargs: None)
    item_name = ""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [PricesRead()]
        return [PricesChange()]

    def safely_get_queryset(self, queryset):
        return queryset.select_related("created_by")

    def _answer(self, item, run, *, status_code=status.HTTP_200_OK) -> Response:
        data = self.get_serializer(item).data
        data["reprice_run"] = None if run is None else run.pk
        return Response(data, status=status_code)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            item, run = type(self).create_service(principal=self.principal, **serializer.validated_data)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return self._answer(item, run, status_code=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        item = self.get_object()
        serializer = self.get_serializer(item, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            item, run = type(self).update_service(
                principal=self.principal, changes=dict(serializer.validated_data), **{self.item_name: item}
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return self._answer(item, run)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        run = type(self).delete_service(principal=self.principal, **{self.item_name: self.get_object()})
        return Response({"reprice_run": run.pk}, status=status.HTTP_200_OK)


class PriceOverrideSerializer(JsonTypes, serializers.ModelSerializer):
    provider = serializers.RegexField(NAME, max_length=64)
    model = serializers.RegexField(NAME, max_length=128, help_text="exact model name as sent in events")
    uncached_input_per_mtok = RateField()
    output_per_mtok = RateField()
    cache_read_per_mtok = RateField(required=False, allow_null=True, help_text="null: the input rate")
    cache_write_5m_per_mtok = RateField(required=False, allow_null=True, help_text="null: the input rate")
    cache_write_1h_per_mtok = RateField(required=False, allow_null=True, help_text="null: the input rate")
    reasoning_per_mtok = RateField(required=False, allow_null=True, help_text="null: the output rate")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reprice_run = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="in a write's answer: the re-pricing run it queued"
    )

    class Meta:
        model = ModelPriceOverride
        fields = [
            "id",
            "provider",
            "model",
            "effective_from",
            "uncached_input_per_mtok",
            "cache_read_per_mtok",
            "cache_write_5m_per_mtok",
            "cache_write_1h_per_mtok",
            "output_per_mtok",
            "reasoning_per_mtok",
            "note",
            "created_by",
            "created_at",
            "reprice_run",
        ]
        read_only_fields = ["id", "created_by", "created_at"]

    def validate(self, attrs):
        provider = attrs.get("provider", getattr(self.instance, "provider", ""))
        model = attrs.get("model", getattr(self.instance, "model", ""))
        effective_from = attrs.get("effective_from", getattr(self.instance, "effective_from", None))
        if price_override_taken(
            provider=provider, model=model, effective_from=effective_from, other_than=self.instance
        ):
            raise serializers.ValidationError(
                {
                    "effective_from": [
                        f"{provider}/{model} has a price from {effective_from} already: change that one"
                    ]
                }
            )
        return attrs


class DeleteAnswerSerializer(serializers.Serializer):
    reprice_run = serializers.IntegerField(help_text="the re-pricing run the deletion queued")

    class Meta:
        ref_name = "PriceDeleted"


class PriceOverrideViewSet(PricesViewSet):
    """Per-model prices in USD per million tokens, each in force from `effective_from` until the next
    one of the same provider and model. A change re-prices the calls it affects (open months; a closed
    month's difference becomes an adjustment)."""

    queryset = ModelPriceOverride.objects.all()
    serializer_class = PriceOverrideSerializer
    create_service = staticmethod(price_override_create)
    update_service = staticmethod(price_override_update)
    delete_service = staticmethod(price_override_delete)
    item_name = "override"

    @extend_schema(responses={200: DeleteAnswerSerializer})
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)


class DiscountSerializer(JsonTypes, serializers.ModelSerializer):
    provider = serializers.RegexField(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$", max_length=64, allow_blank=True, required=False,
        help_text="empty: every provider",
    )  # fmt: skip
    percent = serializers.DecimalField(
        max_digits=6, decimal_places=3, min_value=Decimal(0), max_value=Decimal(100), coerce_to_string=True
    )
    effective_to = serializers.DateTimeField(required=False, allow_null=True, help_text="null: open-ended")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reprice_run = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="in a write's answer: the re-pricing run it queued"
    )

    class Meta:
        model = NegotiatedDiscount
        fields = [
            "id",
            "provider",
            "percent",
            "effective_from",
            "effective_to",
            "note",
            "created_by",
            "created_at",
            "reprice_run",
        ]
        read_only_fields = ["id", "created_by", "created_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["percent"] = _money(instance.percent)
        return data

    def validate(self, attrs):
        start = attrs.get("effective_from", getattr(self.instance, "effective_from", None))
        end = attrs.get("effective_to", getattr(self.instance, "effective_to", None))
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"effective_to": ["must be after effective_from (or null)"]})
        return attrs


class DiscountViewSet(PricesViewSet):
    """Negotiated discounts: a percentage off everything from one provider (or every provider) between
    two instants. A change re-prices the calls it affects."""

    queryset = NegotiatedDiscount.objects.all()
    serializer_class = DiscountSerializer
    create_service = staticmethod(discount_create)
    update_service = staticmethod(discount_update)
    delete_service = staticmethod(discount_delete)
    item_name = "discount"

    @extend_schema(responses={200: DeleteAnswerSerializer})
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)


class RepriceDeltaSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    before_usd = serializers.SerializerMethodField()
    after_usd = serializers.SerializerMethodField()

    class Meta:
        model = RepriceDelta
        fields = ["day", "team", "provider", "model", "adjusted", "before_usd", "after_usd", "calls"]

    def get_before_usd(self, delta) -> str:
        return _money(delta.before_usd)

    def get_after_usd(self, delta) -> str:
        return _money(delta.after_usd)


class RepriceRunSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by_name", read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    calls_per_second = serializers.FloatField(read_only=True, allow_null=True)
    adjustments_usd = serializers.SerializerMethodField()

    class Meta:
        model = RepriceRun
        fields = [
            "id",
            "trigger",
            "object_type",
            "object_id",
            "requested_by",
            "requested_at",
            "status",
            "started_at",
            "finished_at",
            "duration_seconds",
            "calls_scanned",
            "calls_repriced",
            "calls_newly_priced",
            "calls_newly_unpriced",
            "calls_per_second",
            "months_repriced",
            "months_adjusted",
            "adjustments_usd",
            "scopes",
            "error",
        ]

    def get_adjustments_usd(self, run) -> str:
        return _money(run.adjustments_usd)


class RepriceRunDetailSerializer(RepriceRunSerializer):
    deltas = RepriceDeltaSerializer(many=True, read_only=True)

    class Meta(RepriceRunSerializer.Meta):
        fields = [*RepriceRunSerializer.Meta.fields, "deltas"]


class RunPages(PageNumberPagination):
    page_size = 100
    max_page_size = 1000


class RepriceRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    """Re-pricing runs, newest first; one run with its before and after per team, provider, model and
    UTC day (`adjusted`: a closed month's day, turned into a bills adjustment)."""

    queryset = RepriceRun.objects.all()
    permission_classes = [PricesRead]
    pagination_class = RunPages

    def get_serializer_class(self):
        return RepriceRunDetailSerializer if self.action == "retrieve" else RepriceRunSerializer

    def safely_get_queryset(self, queryset):
        if self.action == "retrieve":
            return queryset.prefetch_related("deltas__team")
        return queryset
