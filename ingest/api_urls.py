"""Ingest API beyond /events: LiteLLM logs and the quarantine (wired under /api/v1/ in finops/urls.py)."""

from django.urls import path

from ingest import views

urlpatterns = [
    path("litellm", views.LiteLLMView.as_view(), name="litellm"),
    path("quarantine", views.QuarantineListView.as_view(), name="quarantine"),
    path("quarantine/replay", views.QuarantineReplayView.as_view(), name="quarantine-replay"),
]
