"""URL patterns of this part of ingest (wired in finops/urls.py)."""

urlpatterns: list = []
