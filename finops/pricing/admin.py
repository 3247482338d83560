"""Admin for the organisation's prices. Only finops and admin users (or superusers) may change them.

Saving an override enqueues the repricing of that model's unpriced calls once the save is committed; if
the broker is down the save still stands and the periodic sweep prices the calls later.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.db import transaction

from finops.accounts.models import OrgRole
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.tasks import reprice_unpriced_calls

logger = logging.getLogger(__name__)

PRICE_EDITOR_ORG_ROLES = frozenset({OrgRole.FINOPS, OrgRole.ADMIN})


def may_edit_prices(user) -> bool:
    return bool(
        user.is_active and (user.is_superuser or getattr(user, "org_role", "") in PRICE_EDITOR_ORG_ROLES)
    )


class PriceEditorsOnly(admin.ModelAdmin):
    """Any staff user may look at prices; only finops/admin users change them."""

    list_select_related = ("created_by",)  # shown in every row

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return may_edit_prices(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return may_edit_prices(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return may_edit_prices(request.user)

    def save_model(self, request, obj, form, change) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


def reprice_after_commit(*, request, provider: str, model: str) -> None:
    """Enqueue reprice_unpriced_calls(provider, model) once the surrounding transaction commits."""

    def enqueue() -> None:
        try:
            reprice_unpriced_calls.delay(provider, model)
        except Exception:  # the broker being down must not lose the saved price
            logger.warning(
                "could not enqueue repricing of %s/%s; the periodic sweep will do it",
                provider,
                model,
                exc_info=True,
            )
            messages.warning(
                request,
                f"The price is saved, but the repricing job for {provider}/{model} could not be queued (is the "
                "broker running?). The periodic repricing sweep will price its unpriced calls later.",
            )
        else:
            messages.info(
                request, f"Unpriced calls of {provider}/{model} will be priced by the worker shortly."
            )

    transaction.on_commit(enqueue)


@admin.register(ModelPriceOverride)
class ModelPriceOverrideAdmin(PriceEditorsOnly):
    list_display = (
        "provider",
        "model",
        "effective_from",
        "uncached_input_per_mtok",
        "cache_read_per_mtok",
        "cache_write_5m_per_mtok",
        "cache_write_1h_per_mtok",
        "output_per_mtok",
        "reasoning_per_mtok",
        "created_by",
    )
    list_filter = ("provider",)
    search_fields = ("provider", "model", "note")
    date_hierarchy = "effective_from"
    readonly_fields = ("created_by", "created_at")
    fieldsets = (
        (None, {"fields": ("provider", "model", "effective_from", "note")}),
        (
            "Rates in USD per million tokens (empty cache and reasoning rates fall back as the catalog's do)",
            {
                "fields": (
                    "uncached_input_per_mtok",
                    "cache_read_per_mtok",
                    "cache_write_5m_per_mtok",
                    "cache_write_1h_per_mtok",
                    "output_per_mtok",
                    "reasoning_per_mtok",
                )
            },
        ),
        ("Audit", {"fields": ("created_by", "created_at")}),
    )

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        reprice_after_commit(request=request, provider=obj.provider, model=obj.model)


@admin.register(NegotiatedDiscount)
class NegotiatedDiscountAdmin(PriceEditorsOnly):
    list_display = ("provider_or_all", "percent", "effective_from", "effective_to", "note", "created_by")
    list_filter = ("provider",)
    search_fields = ("provider", "note")
    readonly_fields = ("created_by", "created_at")
    fields = ("provider", "percent", "effective_from", "effective_to", "note", "created_by", "created_at")

    @admin.display(description="provider", ordering="provider")
    def provider_or_all(self, discount: NegotiatedDiscount) -> str:
        return discount.provider or "(all providers)"
