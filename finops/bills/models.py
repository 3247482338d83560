"""Bills (SPEC.md, "Bills"): the months finops closes, the reconciliation's notes, the chargeback.

A bill month is a calendar month in UTC: the providers' statements and invoices are per UTC day, and
the ledger's daily rollups too, so a month's telemetry and its statements cover the same instants.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from finops.accounts.querysets import OrgDataQuerySet
from finops.ledger.models import MONEY, TokenCounts


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
    # a closed month's live rollup totals when its late-event adjustments were last worked out: equal
    # totals now mean no call of it arrived since, and the job skips it (finops/bills/adjustments.py)
    late_seen_calls = models.BigIntegerField(null=True, blank=True)
    late_seen_cost_usd = models.DecimalField(**MONEY, null=True, blank=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} ({self.state})"


class AdjustmentReason(models.TextChoices):
    LATE_EVENT = "late_event", "late event (arrived after the month closed)"
    REPRICE = "reprice", "re-priced (a price or discount changed after the month closed)"


class Adjustment(models.Model):
    """A change to a closed month's telemetry cost, shown in the first open month after it instead of
    changing the closed month's figures (SPEC.md, "Bills": a closed month's figures never change)."""

    month = models.DateField(help_text="the closed month the cost belongs to (first day)")
    shown_in = models.DateField(help_text="the month it is shown and charged in (first day)")
    reason = models.CharField(max_length=16, choices=AdjustmentReason.choices)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        "ledger.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    day = models.DateField(help_text="the UTC day of the calls it adjusts")
    usd = models.DecimalField(max_digits=28, decimal_places=12, help_text="after minus before")
    note = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["shown_in", "month", "day", "id"]
        indexes = [models.Index(fields=["shown_in"], name="adjustment_shown_in_idx")]

    def __str__(self) -> str:
        return f"{self.reason} {self.usd} for {self.month:%Y-%m} in {self.shown_in:%Y-%m}"


class ClosedMonthRollup(TokenCounts):
    """A closed month's daily rollups as they were when it closed: per UTC day x team x agent x provider
    x model, the columns of DailyRollup that bills reads (finops.ledger.models.DailyRollup). Copied in
    one INSERT ... SELECT by month_close, dropped by month_reopen; while the month is closed every read
    of its telemetry (finops.bills.telemetry) answers from here, so a late event, which the writer adds
    to the live rollups as usual, never changes a closed figure. Its difference from the live rollups is
    what the late-event adjustments show (finops.bills.adjustments)."""

    month = models.DateField(help_text="the closed month (first day)")
    day = models.DateField()
    # no database foreign keys: the ids are copied from the daily rollups, whose keys checked them, and a
    # check per copied row would double the close's time; deletes cascade through the ORM
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    agent = models.ForeignKey(
        "ledger.Agent", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    calls = models.IntegerField(default=0)
    unpriced_calls = models.IntegerField(default=0)
    batch_calls = models.IntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_uncached_input_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_read_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_write_5m_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_write_1h_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_output_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_reasoning_usd = models.DecimalField(**MONEY, default=Decimal(0))

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["month", "day", "team", "agent", "provider", "model"], name="closed_rollup_unique"
            )
        ]


class ClosedMonthBasis(models.Model):
    """What each provider's month was charged back from when the month closed (the invoice, the cost
    statement, or the telemetry), frozen with the snapshot: an invoice imported or a statement re-pulled
    after the close changes nothing of a closed month's chargeback (reopen it to take them in)."""

    month = models.DateField(help_text="the closed month (first day)")
    provider = models.CharField(max_length=64)
    basis = models.CharField(max_length=16)
    basis_note = models.CharField(max_length=256, blank=True)
    token_usd = models.DecimalField(**MONEY, help_text="lines naming a model: allocated by telemetry")
    other_usd = models.DecimalField(**MONEY, help_text="lines naming no model (fees, tax, credits)")

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "provider"], name="closed_basis_unique")]


class ReconciliationLine(models.Model):
    """The identity of one reconciliation line (provider, month, UTC day, model, token type or line
    item), so its `id` stays the same every time the month is reconciled, and finops' note on it.

    Rows are made the first time a month's reconciliation shows the line; the figures are never
    stored here (they are computed from the rollups and the statement lines each time), only what a
    person said about them."""

    provider = models.CharField(max_length=64)
    month = models.DateField(help_text="the first day of the bill month")
    day = models.DateField()
    model = models.CharField(max_length=128, help_text="the model as matched: catalog id or normalised name")
    token_type = models.CharField(
        max_length=32, blank=True, help_text="empty: a line item that is not tokens"
    )
    line_item = models.CharField(max_length=255, blank=True, help_text="for a non-token line: the item")
    note = models.TextField(blank=True)
    explained = models.BooleanField(default=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(null=True, blank=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "month", "day", "model", "token_type", "line_item"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "month", "day", "model", "token_type", "line_item"],
                name="reconciliation_line_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.day} {self.model} {self.token_type or self.line_item}"
