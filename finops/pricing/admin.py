"""Admin for the organisation's prices. Only finops and admin users (or superusers) may change them.

Saving or deleting an override or a discount here is audited and queues a re-pricing run of the calls
it affects, as the Prices page and the API do (finops/pricing/prices.py); if the broker is down the save
still stands and beat's sweep starts the run later.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages

from finops.accounts.models import OrgRole
from finops.audit.models import AuditAction
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.prices import price_change_recorded, price_snapshot

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
        before = price_snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        if before != price_snapshot(obj):
            action = AuditAction.UPDATE if change else AuditAction.CREATE
            run = price_change_recorded(
                principal=request.user, item=obj, action=action, before=before, on_error=_broker_down(request)
            )
            _run_message(request, run)

    def delete_model(self, request, obj) -> None:
        before, pk = price_snapshot(obj), obj.pk
        super().delete_model(request, obj)
        obj.pk = pk
        run = price_change_recorded(
            principal=request.user,
            item=obj,
            action=AuditAction.DELETE,
            before=before,
            on_error=_broker_down(request),
        )
        _run_message(request, run)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:  # one audit entry and one run per row, as deleting them one by one
            self.delete_model(request, obj)


def _broker_down(request):
    def tell() -> None:
        messages.warning(
            request,
            "The change is saved, but its re-pricing run could not be queued (is the broker running?). "
            "The periodic repricing sweep will run it within minutes.",
        )

    return tell


def _run_message(request, run) -> None:
    messages.info(
        request,
        f"Re-pricing run {run.pk} queued: the calls this change affects are being re-priced "
        "(see Prices › re-pricing runs).",
    )


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
