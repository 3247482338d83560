"""API routes of the connectors, under /api/v1/ (wired in finops/urls.py)."""

from django.urls import path

from ingest.connectors.api import ConnectorRunView, ConnectorsView, StatementsView

urlpatterns = [
    path("connectors", ConnectorsView.as_view(), name="connectors"),
    path("connectors/<int:connector_id>/run", ConnectorRunView.as_view(), name="connector-run"),
    path("statements", StatementsView.as_view(), name="statements"),
]
