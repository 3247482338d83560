"""Month close and chargeback in the API (SPEC.md, "Bills"), for the admin and finops roles:

- `GET /api/v1/months`: each month with its state;
- `POST /api/v1/months/YYYY-MM/close` and `/reopen` `{"reason"}`: audited; people only, never a token;
- `GET /api/v1/chargeback?month=YYYY-MM&format=json|csv|focus`: the month's invoice (else statement)
  allocated to teams and agents (finops.bills.chargeback, the Months page's reader too).

Reads are organisation data: the admin and finops roles and org-wide `read` tokens; a team's token is a
404, a team member a 403.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from finops.api.permissions import BillingRead, ConnectorManage
from finops.api.viewsets import ScopedAPIView
from finops.bills.api import MonthField
from finops.bills.chargeback import ROUNDING, Chargeback, chargeback_for_month
from finops.bills.closing import MonthNotEnded, MonthStateConflict, month_close, month_reopen
from finops.bills.exports import chargeback_csv, chargeback_focus
from finops.bills.months import MonthError, MonthRow, month_parse, months_listed

FORMATS = ("json", "csv", "focus")


def exact(value: Decimal | None) -> str | None:
    """Money on the wire, exact: every digit the ledger keeps (1e-12), trailing zeros dropped."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class MonthConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the month is not in a state this change applies to"


def _month_of_path(text: str) -> date:
    try:
        return month_parse(text)
    except MonthError as error:
        raise exceptions.ValidationError({"month": [str(error)]}) from error


class MonthSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM (a UTC calendar month)")
    state = serializers.ChoiceField(choices=["open", "closed"])
    closed_at = serializers.DateTimeField(allow_null=True)
    closed_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True, help_text="why it was last closed or reopened")
    ended = serializers.BooleanField(help_text="the month has ended, so it may be closed")

    class Meta:
        ref_name = "BillMonth"


def month_json(row: MonthRow) -> dict:
    return {
        "month": f"{row.month:%Y-%m}",
        "state": row.state,
        "closed_at": row.closed_at.isoformat().replace("+00:00", "Z") if row.closed_at else None,
        "closed_by": row.closed_by,
        "reason": row.reason,
        "ended": row.ended,
    }


class MonthListView(ScopedAPIView):
    """GET /api/v1/months: every month from the first with telemetry to the current one, newest first."""

    permission_classes = [IsAuthenticated, BillingRead]

    @extend_schema(responses=MonthSerializer(many=True))
    def get(self, request):
        return Response([month_json(row) for row in months_listed()])


class MonthChangeRequest(serializers.Serializer):
    reason = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")

    class Meta:
        ref_name = "MonthChangeRequest"


class MonthChangeSerializer(MonthSerializer):
    snapshot_rows = serializers.IntegerField(help_text="daily rollup rows copied (close) or dropped (reopen)")
    telemetry_usd = serializers.CharField(help_text="the snapshot's telemetry cost, exact decimal string")

    class Meta:
        ref_name = "BillMonthChange"


class MonthManage(ConnectorManage):
    message = "Only people with the admin or finops role may close or reopen a month; API tokens may not."


class _MonthChangeView(ScopedAPIView):
    permission_classes = [IsAuthenticated, MonthManage]
    reason_required = False

    def _reason(self, request) -> str:
        body = MonthChangeRequest(data=request.data if isinstance(request.data, dict) else {})
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"non_field_errors": ['send a JSON object: {"reason": "..."}']})
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"].strip()
        if self.reason_required and not reason:
            raise exceptions.ValidationError({"reason": ["say why: the reason is kept in the audit log"]})
        return reason

    def _answer(self, change) -> Response:
        row = change.month
        listed = MonthRow(
            month=row.month,
            state=row.state,
            closed_at=row.closed_at,
            closed_by=row.closed_by.get_username() if row.closed_by else None,
            reason=row.reason,
            ended=True,
        )
        return Response(
            {
                **month_json(listed),
                "snapshot_rows": change.snapshot_rows,
                "telemetry_usd": exact(change.telemetry_usd),
            }
        )


class MonthCloseView(_MonthChangeView):
    """POST /api/v1/months/YYYY-MM/close: lock the month. Its telemetry is snapshotted and each
    provider's basis frozen; a later call for it shows as an adjustment in the next open month. 400 for
    a month that has not ended, 409 for one closed already."""

    @extend_schema(
        request=MonthChangeRequest,
        responses={200: MonthChangeSerializer, 409: OpenApiResponse(description="closed already")},
    )
    def post(self, request, month: str):
        month_start = _month_of_path(month)
        reason = self._reason(request)
        try:
            change = month_close(principal=self.principal, month=month_start, reason=reason)
        except MonthNotEnded as error:
            raise exceptions.ValidationError({"month": [str(error)]}) from error
        except MonthStateConflict as error:
            raise MonthConflict(str(error)) from error
        return self._answer(change)


class MonthReopenView(_MonthChangeView):
    """POST /api/v1/months/YYYY-MM/reopen `{"reason"}` (required): the month's figures are live again;
    its snapshot is dropped (audited). 409 for a month that is open."""

    reason_required = True

    @extend_schema(
        request=MonthChangeRequest,
        responses={200: MonthChangeSerializer, 409: OpenApiResponse(description="open already")},
    )
    def post(self, request, month: str):
        month_start = _month_of_path(month)
        reason = self._reason(request)
        try:
            change = month_reopen(principal=self.principal, month=month_start, reason=reason)
        except MonthStateConflict as error:
            raise MonthConflict(str(error)) from error
        return self._answer(change)


class ChargebackQuery(serializers.Serializer):
    month = MonthField(help_text="YYYY-MM (a UTC calendar month)")
    format = serializers.ChoiceField(choices=FORMATS, required=False, default="json")


class ChargebackRowSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["allocation", "unattributed", "adjustment"])
    provider = serializers.CharField()
    team = serializers.CharField(allow_null=True, help_text="slug; null on the unattributed row")
    agent = serializers.CharField(allow_null=True)
    basis = serializers.CharField(
        allow_null=True, help_text="invoice, statement or telemetry; null: adjustment"
    )
    telemetry_usd = serializers.CharField(
        allow_null=True, help_text="the agent's telemetry cost of the provider"
    )
    share = serializers.FloatField(allow_null=True, help_text="of the provider's telemetry cost")
    amount_usd = serializers.CharField(help_text="exact decimal string")
    adjusts_month = serializers.CharField(allow_null=True, help_text="adjustments: the closed month, YYYY-MM")
    reason = serializers.CharField(allow_null=True, help_text="adjustments: late_event or reprice")
    unpriced_calls = serializers.IntegerField(
        allow_null=True,
        help_text="the agent's calls with no price, so in no share (their cost is unknown, never $0); 0 on "
        "the unattributed row, null on adjustments",
    )

    class Meta:
        ref_name = "ChargebackRow"


class ProviderChargeSerializer(serializers.Serializer):
    provider = serializers.CharField()
    basis = serializers.ChoiceField(choices=["invoice", "statement", "telemetry"])
    basis_note = serializers.CharField(help_text="why this basis (e.g. only a usage statement)")
    total_usd = serializers.CharField()
    telemetry_usd = serializers.CharField()
    allocated_usd = serializers.CharField()
    unattributed_usd = serializers.CharField()
    unpriced_calls = serializers.IntegerField(
        help_text="the provider's calls in the month with no price: their cost is unknown, not in the shares"
    )

    class Meta:
        ref_name = "ProviderCharge"


class ChargebackSerializer(serializers.Serializer):
    month = serializers.CharField()
    state = serializers.ChoiceField(choices=["open", "closed"])
    currency = serializers.CharField()
    total_usd = serializers.CharField(help_text="the sum of every row, exactly")
    allocated_usd = serializers.CharField()
    unattributed_usd = serializers.CharField()
    adjustments_usd = serializers.CharField()
    rounding = serializers.CharField()
    unpriced_calls = serializers.IntegerField(help_text="calls with no price, every provider: cost unknown")
    providers = ProviderChargeSerializer(many=True)
    rows = ChargebackRowSerializer(many=True)

    class Meta:
        ref_name = "Chargeback"


def chargeback_json(chargeback: Chargeback) -> dict:
    return {
        "month": f"{chargeback.month:%Y-%m}",
        "state": chargeback.state,
        "currency": "USD",
        "total_usd": exact(chargeback.total_usd),
        "allocated_usd": exact(chargeback.allocated_usd),
        "unattributed_usd": exact(chargeback.unattributed_usd),
        "adjustments_usd": exact(chargeback.adjustments_usd),
        "rounding": ROUNDING,
        "unpriced_calls": chargeback.unpriced_calls,
        "providers": [
            {
                "provider": charge.basis.provider,
                "basis": charge.basis.basis,
                "basis_note": charge.basis.basis_note,
                "total_usd": exact(charge.basis.total_usd),
                "telemetry_usd": exact(charge.telemetry_usd),
                "allocated_usd": exact(charge.allocated_usd),
                "unattributed_usd": exact(charge.unattributed_usd),
                "unpriced_calls": charge.unpriced_calls,
            }
            for charge in chargeback.providers
        ],
        "rows": [
            {
                "kind": row.kind,
                "provider": row.provider,
                "team": row.team,
                "agent": row.agent,
                "basis": row.basis,
                "telemetry_usd": exact(row.telemetry_usd),
                "share": None if row.share is None else round(float(row.share), 12),
                "amount_usd": exact(row.amount_usd),
                "adjusts_month": f"{row.adjusts_month:%Y-%m}" if row.adjusts_month else None,
                "reason": row.reason,
                "unpriced_calls": row.unpriced_calls,
            }
            for row in chargeback.rows
        ],
    }


class ChargebackView(ScopedAPIView):
    """GET /api/v1/chargeback?month=YYYY-MM&format=json|csv|focus: per provider, the month's invoice (else
    cost statement, else telemetry cost: `basis` says which) allocated to teams and agents by their share
    of the provider's telemetry cost; lines naming no model, or a month without telemetry, are the
    `unattributed` row; adjustments shown in the month (late events, re-pricing of closed months) are rows
    of their own. Amounts are exact and the rows sum exactly to `total_usd` (`rounding` says how). Calls with
    no price are counted (`unpriced_calls`), never taken as $0: they are in no share.
    `csv`: the rows as CSV; `focus`: FOCUS 1.2 columns plus `x_team`, `x_agent` and `x_unpriced_calls`."""

    permission_classes = [IsAuthenticated, BillingRead]

    def perform_content_negotiation(self, request, force=False):
        # `format` is this endpoint's own parameter (csv and focus files are written here), not DRF's
        # renderer override; every other answer, errors too, is JSON
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        parameters=[ChargebackQuery],
        responses={
            (200, "application/json"): ChargebackSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def get(self, request):
        query = ChargebackQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        month = query.validated_data["month"]
        chargeback = chargeback_for_month(month=month)
        kind = query.validated_data["format"]
        if kind == "json":
            return Response(chargeback_json(chargeback))
        text = chargeback_csv(chargeback) if kind == "csv" else chargeback_focus(chargeback)
        suffix = "" if kind == "csv" else "-focus"
        response = HttpResponse(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="finops-chargeback-{month:%Y-%m}{suffix}.csv"'
        )
        return response
