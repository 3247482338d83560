"""Rows that could not be ingested, kept with their raw payload and reason until replayed or dismissed."""

from __future__ import annotations

from django.db import models

from finops.accounts.models import Team


class QuarantinedRow(models.Model):
    source = models.CharField(max_length=64, help_text="api:events, file:<name>, otlp, litellm, …")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    position = models.CharField(
        max_length=128, blank=True, help_text="index in the batch or line in the file"
    )
    event_id = models.CharField(max_length=256, blank=True)
    payload = models.JSONField(help_text="the row as received")
    errors = models.JSONField(help_text="field → list of reasons")
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["source", "created_at"], name="quarantine_source_idx")]

    def __str__(self) -> str:
        return f"{self.source} {self.position}: {self.errors}"
