"""/api/v1/connectors and /api/v1/statements: provider pulls and the statement lines they produce."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, parsers, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from finops.api.fields import JsonTypes
from finops.api.pagination import PageNumberPagination
from finops.api.viewsets import ScopedAPIView, TeamScopedViewSet
from ingest.connectors.filters import StatementLineFilter
from ingest.connectors.models import Connector, InvoiceMapping, StatementLine
from ingest.connectors.permissions import BillingRead, ConnectorManage, InvoiceImportPermission
from ingest.connectors.services import connector_create, connector_run_request
from ingest.imports import ImportFileError, file_import


class ConnectorSerializer(JsonTypes, serializers.ModelSerializer):
    credentials = serializers.DictField(
        child=serializers.CharField(), write_only=True, help_text='e.g. {"api_key": "<admin key>"}'
    )
    pull_from = serializers.DateTimeField(
        write_only=True,
        required=False,
        help_text="where the first pull starts (default: start of last month)",
    )
    provider = serializers.CharField(read_only=True)
    base_url = serializers.URLField(required=False, allow_blank=True)

    class Meta:
        model = Connector
        fields = [
            "id",
            "kind",
            "provider",
            "name",
            "base_url",
            "enabled",
            "credentials",
            "pull_from",
            "cursor",
            "last_run_at",
            "last_status",
            "last_error",
            "last_rows",
            "created_at",
        ]
        read_only_fields = ["cursor", "last_run_at", "last_status", "last_error", "last_rows", "created_at"]

    def validate_credentials(self, credentials: dict) -> dict:
        if not (credentials.get("api_key") or "").strip():
            raise serializers.ValidationError('give the provider admin key as {"api_key": "..."}')
        return {"api_key": credentials["api_key"].strip()}

    def to_representation(self, connector: Connector) -> dict:
        data = super().to_representation(connector)
        data["base_url"] = connector.api_base_url
        return data


@extend_schema_field({"type": "string", "format": "decimal"})
class DecimalString(serializers.Field):
    """Money as an exact decimal string, without the column's trailing zeros."""

    def to_representation(self, value: Decimal) -> str:
        return format(value.normalize(), "f")


class StatementLineSerializer(serializers.ModelSerializer):
    amount = DecimalString(allow_null=True)

    class Meta:
        model = StatementLine
        fields = [
            "id",
            "provider",
            "kind",
            "source",
            "period_start",
            "period_end",
            "model",
            "token_type",
            "line_item",
            "quantity",
            "amount",
            "currency",
            "project_id",
            "api_key_id",
            "workspace_id",
            "batch",
            "service_tier",
            "context_window",
            "pulled_at",
        ]


class StatementPages(PageNumberPagination):
    page_size = 500
    max_page_size = 5000


class ConnectorViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    # organisation billing data: the admin and finops roles (and org-wide read tokens) list them; only
    # people with those roles create and run them

    queryset = Connector.objects.all()
    serializer_class = ConnectorSerializer
    lookup_url_kwarg = "connector_id"

    def get_permissions(self):
        if self.action in ("create", "run"):
            return [IsAuthenticated(), ConnectorManage()]
        return [IsAuthenticated(), BillingRead()]

    @extend_schema(responses=ConnectorSerializer(many=True))
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ConnectorSerializer, responses={201: ConnectorSerializer})
    def create(self, request):
        serializer = ConnectorSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        connector = connector_create(
            kind=params["kind"],
            name=params["name"],
            credentials=params["credentials"],
            base_url=params.get("base_url") or "",
            pull_from=params.get("pull_from"),
            enabled=params.get("enabled", True),
        )
        return Response(ConnectorSerializer(connector).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "ConnectorRunQueued",
                {
                    "run_id": serializers.IntegerField(),
                    "connector_id": serializers.IntegerField(),
                    "status": serializers.CharField(),
                },
            )
        },
    )
    def run(self, request, connector_id: int):
        connector = self.get_object()
        run = connector_run_request(connector_id=connector.pk)
        return Response(
            {"run_id": run.pk, "connector_id": connector.pk, "status": run.status},
            status=status.HTTP_202_ACCEPTED,
        )


class StatementLineViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    queryset = StatementLine.objects.all()
    serializer_class = StatementLineSerializer
    permission_classes = [IsAuthenticated, BillingRead]
    filterset_class = StatementLineFilter
    pagination_class = StatementPages

    def safely_get_queryset(self, queryset):
        return queryset.order_by("period_start", "id")

    @extend_schema(responses=StatementLineSerializer(many=True))
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class InvoiceMappingSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceMapping
        fields = ["id", "name", "header", "spec", "created_at", "updated_at"]


class InvoiceMappingViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    """GET /api/v1/invoice-mappings: the saved column mappings (made and changed on the Invoices page)."""

    queryset = InvoiceMapping.objects.all()
    serializer_class = InvoiceMappingSerializer
    permission_classes = [IsAuthenticated, BillingRead]

    @extend_schema(responses=InvoiceMappingSerializer(many=True))
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class InvoiceImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="the invoice CSV")
    format = serializers.ChoiceField(choices=["focus", "invoice-csv"], default="invoice-csv")
    mapping = serializers.CharField(
        required=False, allow_blank=True, help_text="the saved mapping's name (format invoice-csv)"
    )


class InvoiceImportView(ScopedAPIView):
    """POST /api/v1/invoices (multipart): import an invoice file now, as `finops import FILE --format
    focus|invoice-csv [--mapping NAME]` does, and answer what it did: statement lines new, changed,
    unchanged and removed, and every skipped row with its line number and reasons. Importing the same
    file again changes nothing."""

    permission_classes = [InvoiceImportPermission]
    # JSON is read only to refuse it (a file is multipart), and so a body over the limit is a 413
    parser_classes = [parsers.MultiPartParser, parsers.FormParser, parsers.JSONParser]

    @extend_schema(
        request={"multipart/form-data": InvoiceImportRequestSerializer},
        responses={
            200: inline_serializer(
                "InvoiceImportResult",
                {
                    "file_name": serializers.CharField(),
                    "format": serializers.CharField(),
                    "mapping": serializers.CharField(),
                    "source": serializers.CharField(),
                    "rows_read": serializers.IntegerField(),
                    "lines_created": serializers.IntegerField(),
                    "lines_updated": serializers.IntegerField(),
                    "lines_unchanged": serializers.IntegerField(),
                    "lines_removed": serializers.IntegerField(),
                    "skipped": serializers.IntegerField(),
                    "skipped_rows": serializers.ListField(child=serializers.DictField()),
                    "totals": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def post(self, request):
        params = InvoiceImportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        uploaded = params.validated_data["file"]
        file_name = Path(uploaded.name).name
        with tempfile.TemporaryDirectory(prefix="finops-invoice-") as folder:
            path = Path(folder) / "upload.csv"
            with path.open("wb") as destination:
                for chunk in uploaded.chunks():
                    destination.write(chunk)
            try:
                summary = file_import(
                    path=path,
                    file_format=params.validated_data["format"],
                    file_name=file_name,
                    principal=self.principal,
                    mapping=params.validated_data.get("mapping") or None,
                )
            except ImportFileError as error:
                raise ValidationError({"file": [str(error)]}) from None
        return Response(_import_result(summary))


def _import_result(summary) -> dict:
    if hasattr(summary, "as_json"):
        return summary.as_json()
    return {  # a FOCUS file: the same shape, without a mapping or totals
        "file_name": summary.file_name,
        "format": summary.format,
        "mapping": "",
        "source": summary.source,
        "rows_read": summary.rows_read,
        "lines_created": summary.write.created,
        "lines_updated": summary.write.updated,
        "lines_unchanged": summary.write.unchanged,
        "lines_removed": summary.write.removed,
        "skipped": summary.rejected,
        "skipped_rows": [
            {"line": int(sample["position"].split()[-1]), "errors": sample["errors"], "row": None}
            for sample in summary.rejected_samples
        ],
        "totals": [],
    }
