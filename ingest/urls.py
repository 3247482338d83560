"""Ingest pages: file upload with its job progress, the quarantine, and invoice imports through a column
mapping (wired in finops/urls.py)."""

from django.urls import path

from ingest import views
from ingest.connectors import invoice_views

app_name = "ingest"

urlpatterns = [
    path("upload", views.upload, name="upload"),
    path("jobs/<int:job_id>", views.job_detail, name="job"),
    path("jobs/<int:job_id>/progress", views.job_progress, name="job-progress"),
    path("quarantine", views.quarantine_list, name="quarantine"),
    path("quarantine/replay", views.quarantine_replay, name="quarantine-replay"),
    path("invoices", invoice_views.invoices, name="invoices"),
    path("invoices/<int:import_id>", invoice_views.invoice_result, name="invoice"),
    path("invoices/<int:import_id>/map", invoice_views.invoice_map, name="invoice-map"),
    path("invoices/<int:import_id>/import", invoice_views.invoice_import, name="invoice-import"),
    path(
        "invoices/mappings/<int:mapping_id>/delete",
        invoice_views.invoice_mapping_remove,
        name="invoice-mapping-delete",
    ),
]
