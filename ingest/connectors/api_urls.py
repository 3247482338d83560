"""API routes of the connectors, under /api/v1/ (wired in finops/urls.py)."""

from django.urls import path

from ingest.connectors.api import (
    ConnectorViewSet,
    InvoiceImportView,
    InvoiceMappingViewSet,
    StatementLineViewSet,
)

urlpatterns = [
    path("connectors", ConnectorViewSet.as_view({"get": "list", "post": "create"}), name="connectors"),
    path(
        "connectors/<int:connector_id>/run", ConnectorViewSet.as_view({"post": "run"}), name="connector-run"
    ),
    path("statements", StatementLineViewSet.as_view({"get": "list"}), name="statements"),
    path("invoices", InvoiceImportView.as_view(), name="invoices"),
    path("invoice-mappings", InvoiceMappingViewSet.as_view({"get": "list"}), name="invoice-mappings"),
]
