"""Rows that could not be ingested, kept with their raw payload and reason until replayed or dismissed;
and file imports with their progress."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from finops.accounts.models import Team
from finops.accounts.querysets import CreatorOwnedQuerySet, TeamOwnedQuerySet
from finops.core.json_depth import BoundedJSONDecoder
from ingest.validation import storable


class QuarantinedRow(models.Model):
    source = models.CharField(max_length=64, help_text="api:events, file:<name>, otlp, litellm, …")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    position = models.CharField(
        max_length=128, blank=True, help_text="index in the batch or line in the file"
    )
    event_id = models.CharField(max_length=256, blank=True)
    payload = models.JSONField(help_text="the row as received", decoder=BoundedJSONDecoder)
    errors = models.JSONField(help_text="field → list of reasons")
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    adapter = models.CharField(
        max_length=32,
        default="events",
        blank=True,
        help_text="how to turn the payload into an event on replay: events, events-csv, litellm, …",
    )

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["source", "created_at"], name="quarantine_source_idx")]

    def __str__(self) -> str:
        return f"{self.source} {self.position}: {self.errors}"

    @classmethod
    def of(cls, *, event_id: str | None, payload: Any, errors: dict, **fields: Any) -> QuarantinedRow:
        """A row to quarantine, kept as received where PostgreSQL can hold it: a text holding a NUL or
        a lone surrogate, or a payload holding NaN, is kept as its escaped JSON text (`storable`)."""
        payload = storable(payload)
        return cls(
            event_id=storable(event_id or "")[:256],
            # a row that was JSON null is kept as JSON null (None alone would be SQL NULL)
            payload=models.Value(None, models.JSONField()) if payload is None else payload,
            errors=storable(errors),
            **fields,
        )


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class ImportJob(models.Model):
    """One uploaded file and the progress of its import by the worker."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_name = models.CharField(max_length=255, help_text="the name the file was uploaded with")
    stored_path = models.CharField(max_length=1024, help_text="where the upload is kept on the server")
    format = models.CharField(max_length=32, default="auto")
    source = models.CharField(max_length=64, blank=True, help_text="quarantine source of its bad rows")
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    rows_read = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    skipped_rows = models.JSONField(
        default=list,
        blank=True,
        help_text="a provider bill (FOCUS): its rows not read, [{position, errors}], first 1,000; they are "
        "never quarantined (a statement row must not reach the call writer), so the job page lists them",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = CreatorOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} of {self.file_name} ({self.status})"
