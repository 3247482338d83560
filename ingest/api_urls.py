"""Ingest API beyond /events: LiteLLM logs and the quarantine (wired under /api/v1/ in finops/urls.py)."""

from django.urls import path

from ingest import views

urlpatterns = [
    path("litellm", views.LiteLLMView.as_view(), name="litellm"),
    path("quarantine", views.QuarantineViewSet.as_view({"get": "list"}), name="quarantine"),
    path("quarantine/replay", views.QuarantineViewSet.as_view({"post": "replay"}), name="quarantine-replay"),
]
