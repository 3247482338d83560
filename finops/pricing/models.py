"""The organisation's own prices: custom model prices and negotiated discounts, with effective dates."""

from __future__ import annotations

from django.conf import settings
from django.db import models

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

    class Meta:
        ordering = ["provider", "-effective_from"]

    def __str__(self) -> str:
        return f"{self.percent}% off {self.provider or 'all providers'} from {self.effective_from:%Y-%m-%d}"
