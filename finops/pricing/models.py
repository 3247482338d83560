"""The organisation's own prices: custom model prices and negotiated discounts, with effective dates."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from finops.accounts.querysets import OrgDataQuerySet

RATE = {"max_digits": 14, "decimal_places": 6}


class ModelPriceOverride(models.Model):
    """A per-MTok price for a model the catalog lacks, or a negotiated per-model price.

    In force from `effective_from` until the next override of the same provider and model.
    Empty cache rates fall back as the catalog's do (cache read and writes at the input rate).
    """

    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, help_text="exact model name as sent in events")
    effective_from = models.DateTimeField()
    uncached_input_per_mtok = models.DecimalField(**RATE)
    output_per_mtok = models.DecimalField(**RATE)
    cache_read_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    cache_write_5m_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    cache_write_1h_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    reasoning_per_mtok = models.DecimalField(**RATE, null=True, blank=True, help_text="empty: output rate")
    note = models.CharField(max_length=256, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="price_override_unique_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from:%Y-%m-%d}"


class NegotiatedDiscount(models.Model):
    """A percentage off everything from one provider (or all, if provider is empty) in a date range."""

    provider = models.CharField(max_length=64, blank=True, help_text="empty: every provider")
    percent = models.DecimalField(max_digits=6, decimal_places=3, help_text="e.g. 12.5 for 12.5% off")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True, help_text="empty: open-ended")
    note = models.CharField(max_length=256, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "-effective_from"]

    def __str__(self) -> str:
        return f"{self.percent}% off {self.provider or 'all providers'} from {self.effective_from:%Y-%m-%d}"


class RepriceStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class RepriceRun(models.Model):
    """One re-pricing of the ledger after a price or discount changed (or `finops reprice`): what
    triggered it, which calls it covered (`scopes`), and what it did. Open months' calls and rollups are
    re-priced; a closed month's difference becomes bills adjustments. Its before/after per team, model
    and day are its `deltas`."""

    trigger = models.CharField(max_length=256, help_text="what changed, in words")
    object_type = models.CharField(max_length=32, blank=True, help_text="price_override, discount or empty")
    object_id = models.CharField(max_length=32, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(max_length=256, blank=True, help_text="as named when it happened")
    requested_at = models.DateTimeField(auto_now_add=True)
    # [{"provider": str | null, "model": str | null, "start": iso, "end": iso | null}], null = every one
    scopes = models.JSONField(default=list)
    status = models.CharField(max_length=8, choices=RepriceStatus.choices, default=RepriceStatus.QUEUED)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    calls_scanned = models.BigIntegerField(default=0, help_text="calls priced again, changed or not")
    calls_repriced = models.BigIntegerField(default=0, help_text="calls whose stored cost changed")
    calls_newly_priced = models.BigIntegerField(default=0, help_text="unpriced calls that got a price")
    calls_newly_unpriced = models.BigIntegerField(default=0, help_text="calls whose price went away")
    months_repriced = models.JSONField(default=list, help_text="open months whose calls were re-priced")
    months_adjusted = models.JSONField(default=list, help_text="closed months turned into adjustments")
    adjustments_usd = models.DecimalField(max_digits=28, decimal_places=12, default=0)
    error = models.TextField(blank=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"reprice run {self.pk} ({self.status}): {self.trigger}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def calls_per_second(self) -> float | None:
        seconds = self.duration_seconds
        return None if not seconds else self.calls_scanned / seconds


class RepriceDelta(models.Model):
    """A run's before and after for one team, provider, model and UTC day, over the calls whose cost it
    changed. `adjusted`: the day is in a closed month, so the calls kept their cost and the difference
    is a bills adjustment; `before_usd` then includes the earlier re-pricing adjustments of that day."""

    run = models.ForeignKey(RepriceRun, on_delete=models.CASCADE, related_name="deltas")
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    day = models.DateField()
    adjusted = models.BooleanField(default=False)
    before_usd = models.DecimalField(max_digits=28, decimal_places=12)
    after_usd = models.DecimalField(max_digits=28, decimal_places=12)
    calls = models.BigIntegerField()

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["day", "team_id", "provider", "model"]
        indexes = [models.Index(fields=["run", "day"], name="reprice_delta_run_day_idx")]
