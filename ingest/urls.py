"""Ingest pages: file upload with its job progress, and the quarantine (wired in finops/urls.py)."""

from django.urls import path

from ingest import views

app_name = "ingest"

urlpatterns = [
    path("upload", views.upload, name="upload"),
    path("jobs/<int:job_id>", views.job_detail, name="job"),
    path("jobs/<int:job_id>/progress", views.job_progress, name="job-progress"),
    path("quarantine", views.quarantine_list, name="quarantine"),
    path("quarantine/replay", views.quarantine_replay, name="quarantine-replay"),
]
