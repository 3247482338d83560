"""Bills (SPEC.md, "Bills"): the months finops closes, the reconciliation's notes, the chargeback.

A bill month is a calendar month in UTC: the providers' statements and invoices are per UTC day, and
the ledger's daily rollups too, so a month's telemetry and its statements cover the same instants.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from finops.accounts.querysets import OrgDataQuerySet


class MonthState(models.TextChoices):
    OPEN = "open", "open"
    CLOSED = "closed", "closed"


class BillMonth(models.Model):
    """One month's state. A month with no row is open; closing creates or updates the row, reopening
    sets it open again (both audited, with the reason)."""

    month = models.DateField(unique=True, help_text="the first day of the month")
    state = models.CharField(max_length=8, choices=MonthState.choices, default=MonthState.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=512, blank=True, help_text="why it was last closed or reopened")

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} ({self.state})"
