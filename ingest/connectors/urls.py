"""The connector status page, under /connectors/ (wired in finops/urls.py)."""

from django.urls import path

from ingest.connectors.views import connector_pull_now, connector_status

app_name = "connectors"

urlpatterns = [
    path("", connector_status, name="status"),
    path("<int:connector_id>/pull", connector_pull_now, name="pull-now"),
]
