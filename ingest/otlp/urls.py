"""URL patterns of this part of ingest (wired in finops/urls.py under /v1/)."""

from django.urls import path

from ingest.otlp.views import traces_view

urlpatterns = [
    path("traces", traces_view, name="otlp-traces"),
]
