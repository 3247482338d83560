"""Bills in the API (SPEC.md, "Bills"): the reconciliation of a provider's month and finops' notes on it.

`GET /api/v1/reconciliation?provider=&month=YYYY-MM`: organisation billing data, read by the admin and
finops roles and org-wide `read` tokens (a team's members get a 403, a team's token a 404, as
/api/v1/statements). `PATCH /api/v1/reconciliation/lines/{id}` `{"note", "explained"}`: the admin and
finops roles only, audited. A provider finops has no telemetry or statement of answers 200 with no
lines (a provider is whatever the telemetry names; a new one is not an error).
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers
from rest_framework.response import Response

from finops.api.fields import JsonTypes
from finops.api.permissions import BillingRead, ConnectorManage
from finops.api.viewsets import ScopedAPIView, TeamScopedViewSet
from finops.bills.models import ReconciliationLine
from finops.bills.months import MONTH_RANGE_PATTERN, MonthError, month_parse
from finops.bills.reconcile import CAUSES, Line, LineStatus, Reconciliation, reconciliation
from finops.bills.services import reconciliation_line_annotate
from finops.kpis.api import money

STATUSES = [
    LineStatus.MATCHED,
    LineStatus.OVER,
    LineStatus.UNDER,
    LineStatus.ONLY_IN_STATEMENT,
    LineStatus.ONLY_IN_TELEMETRY,
]


class BillingChange(ConnectorManage):
    message = "Only people with the admin or finops role may annotate a reconciliation; API tokens may not."


@extend_schema_field({"type": "string", "pattern": MONTH_RANGE_PATTERN, "example": "2026-11"})
class MonthField(serializers.CharField):
    """A bill month, `YYYY-MM`, read as its first day; an error names what was given."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return month_parse(text)
        except MonthError as error:
            raise serializers.ValidationError(str(error)) from None


class ReconciliationQuery(serializers.Serializer):
    provider = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64, help_text="e.g. anthropic, openai"
    )
    month = MonthField(help_text="the UTC calendar month, YYYY-MM")


def _rate(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


class ReconciliationLineSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="stable: the same line of the same month keeps it")
    day = serializers.DateField()
    model = serializers.CharField(help_text="matched across aliases and dated snapshots (the catalog's id)")
    model_names = serializers.ListField(child=serializers.CharField(), help_text="as each side named it")
    token_type = serializers.CharField(help_text="empty for a line item that is not tokens")
    line_item = serializers.CharField(help_text="the statement's item, for a line that is not tokens")
    telemetry_tokens = serializers.IntegerField()
    statement_tokens = serializers.IntegerField(allow_null=True, help_text="null: the statement gives none")
    telemetry_usd = serializers.CharField()
    statement_usd = serializers.CharField(allow_null=True, help_text="null: unknown (no price for it)")
    variance_usd = serializers.CharField(allow_null=True, help_text="statement − telemetry")
    telemetry_rate_per_mtok = serializers.CharField(allow_null=True)
    statement_rate_per_mtok = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=STATUSES)
    cause = serializers.ChoiceField(choices=list(CAUSES), allow_null=True)
    cause_text = serializers.CharField(allow_null=True, help_text="what the cause means")
    cause_note = serializers.CharField(help_text="what in the data shows the cause")
    note = serializers.CharField(help_text="finops' note")
    explained = serializers.BooleanField()

    class Meta:
        ref_name = "ReconciliationLine"


class ReconciliationSerializer(serializers.Serializer):
    provider = serializers.CharField()
    month = serializers.CharField()
    state = serializers.ChoiceField(choices=["open", "closed"])
    telemetry_usd = serializers.CharField()
    statement_usd = serializers.CharField(allow_null=True, help_text="null without any statement")
    statement_basis = serializers.ChoiceField(
        choices=["cost", "usage_priced", "none"],
        help_text="cost: the provider's cost report; usage_priced: its usage report at finops' rates",
    )
    statement_source = serializers.CharField(allow_null=True)
    invoice_usd = serializers.CharField(allow_null=True, help_text="null without an invoice")
    invoice_sources = serializers.ListField(child=serializers.CharField())
    variance_usd = serializers.CharField(allow_null=True)
    variance_percent = serializers.FloatField(allow_null=True, help_text="variance ÷ telemetry × 100")
    explained_usd = serializers.CharField(help_text="|variance| of unmatched lines marked explained")
    unexplained_usd = serializers.CharField(help_text="|variance| of the other unmatched lines")
    with_cause_usd = serializers.CharField(help_text="|variance| of unmatched lines with a cause")
    without_cause_usd = serializers.CharField(help_text="|variance| of unmatched lines without one")
    tolerance = serializers.FloatField(help_text="FINOPS_RECONCILE_TOLERANCE, as a fraction")
    skipped_lines = serializers.ListField(child=serializers.CharField(), help_text="and why")
    lines = ReconciliationLineSerializer(many=True)

    class Meta:
        ref_name = "Reconciliation"


def reconciliation_line_json(line: Line) -> dict:
    return {
        "id": line.id,
        "day": line.day.isoformat(),
        "model": line.model,
        "model_names": sorted(line.model_names),
        "token_type": line.token_type,
        "line_item": line.line_item,
        "telemetry_tokens": line.telemetry_tokens,
        "statement_tokens": line.statement_tokens,
        "telemetry_usd": money(line.telemetry_usd),
        "statement_usd": money(line.statement_usd),
        "variance_usd": money(line.variance_usd),
        "telemetry_rate_per_mtok": _rate(line.telemetry_rate),
        "statement_rate_per_mtok": _rate(line.statement_rate),
        "status": line.status,
        "cause": line.cause,
        "cause_text": CAUSES.get(line.cause) if line.cause else None,
        "cause_note": line.note_of_cause,
        "note": line.note,
        "explained": line.explained,
    }


def reconciliation_json(result: Reconciliation) -> dict:
    percent = result.variance_percent
    return {
        "provider": result.provider,
        "month": f"{result.month:%Y-%m}",
        "state": result.state,
        "telemetry_usd": money(result.telemetry_usd),
        "statement_usd": money(result.statement_usd),
        "statement_basis": result.statement_basis,
        "statement_source": result.statement_source,
        "invoice_usd": money(result.invoice_usd),
        "invoice_sources": result.invoice_sources,
        "variance_usd": money(result.variance_usd),
        "variance_percent": None if percent is None else round(float(percent), 6),
        "explained_usd": money(result.explained_usd),
        "unexplained_usd": money(result.unexplained_usd),
        "with_cause_usd": money(result.with_cause_usd),
        "without_cause_usd": money(result.without_cause_usd),
        "tolerance": float(result.tolerance),
        "skipped_lines": result.skipped_lines,
        "lines": [reconciliation_line_json(line) for line in result.lines],
    }


class ReconciliationView(ScopedAPIView):
    """GET /api/v1/reconciliation: a provider's UTC month, finops' telemetry against the provider's
    statement and invoice, per day, model and token type, each line's status and likely cause."""

    permission_classes = [BillingRead]

    @extend_schema(parameters=[ReconciliationQuery], responses=ReconciliationSerializer)
    def get(self, request):
        query = ReconciliationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = reconciliation(
            provider=query.validated_data["provider"], month=query.validated_data["month"]
        )
        return Response(reconciliation_json(result))


class ReconciliationLineNoteSerializer(JsonTypes, serializers.ModelSerializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    explained = serializers.BooleanField(required=False)
    month = serializers.DateField(format="%Y-%m", read_only=True)

    class Meta:
        model = ReconciliationLine
        fields = [
            "id",
            "provider",
            "month",
            "day",
            "model",
            "token_type",
            "line_item",
            "note",
            "explained",
            "updated_at",
        ]
        read_only_fields = ["id", "provider", "day", "model", "token_type", "line_item", "updated_at"]

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"note": ["give note, explained or both"]})
        return attrs


class ReconciliationLineViewSet(mixins.UpdateModelMixin, TeamScopedViewSet):
    """PATCH /api/v1/reconciliation/lines/{id}: finops' note on a line and whether it is explained."""

    queryset = ReconciliationLine.objects.all()
    serializer_class = ReconciliationLineNoteSerializer
    permission_classes = [BillingChange]
    http_method_names = ["patch", "options"]

    def partial_update(self, request, *args, **kwargs):
        line = self.get_object()
        serializer = self.get_serializer(line, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        line = reconciliation_line_annotate(
            principal=self.principal, line=line, changes=dict(serializer.validated_data)
        )
        return Response(self.get_serializer(line).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)
