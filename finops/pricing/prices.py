"""Writes of the organisation's prices (overrides and negotiated discounts), from the page, the API and
the admin: each one audited (who, when, before, after) and followed by a re-pricing run of the calls it
affects, queued once the change commits (finops/pricing/reprice.py). A broker that is down loses no
re-pricing: the run stays queued and beat's sweep starts it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from finops.accounts.selectors import Principal
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceRun
from finops.pricing.reprice import RepriceScope, reprice_run_create

logger = logging.getLogger(__name__)

OVERRIDE_FIELDS = (
    "provider",
    "model",
    "effective_from",
    "uncached_input_per_mtok",
    "cache_read_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "output_per_mtok",
    "reasoning_per_mtok",
    "note",
)
DISCOUNT_FIELDS = ("provider", "percent", "effective_from", "effective_to", "note")
OBJECT_TYPES = {ModelPriceOverride: "price_override", NegotiatedDiscount: "discount"}


def _snapshot(item, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(item, name) for name in fields}


def override_scope(*, provider: str, model: str, effective_from: datetime) -> RepriceScope:
    """The calls an override (of this provider, model and start) prices: from its start until the next
    override of the same model, as the price book reads the table now."""
    following = (
        ModelPriceOverride.objects.filter(
            provider__iexact=provider, model__iexact=model, effective_from__gt=effective_from
        )
        .order_by("effective_from")
        .values_list("effective_from", flat=True)
        .first()
    )
    return RepriceScope(provider=provider.lower(), model=model.lower(), start=effective_from, end=following)


def discount_scope(*, provider: str, effective_from: datetime, effective_to: datetime | None) -> RepriceScope:
    return RepriceScope(provider=provider.lower() or None, model=None, start=effective_from, end=effective_to)


def _scopes(*, kind: type, before: dict | None, after: dict | None) -> list[RepriceScope]:
    """The calls a change touches: those the item priced before it, and those it prices after."""
    scopes = []
    for state in (before, after):
        if not state:
            continue
        if kind is ModelPriceOverride:
            scope = override_scope(
                provider=state["provider"], model=state["model"], effective_from=state["effective_from"]
            )
        else:
            scope = discount_scope(
                provider=state["provider"],
                effective_from=state["effective_from"],
                effective_to=state["effective_to"],
            )
        if scope not in scopes:
            scopes.append(scope)
    return scopes


def reprice_enqueue(run: RepriceRun, *, on_error: Callable[[], None] | None = None) -> None:
    """Send the run to the worker once the caller's transaction commits; `on_error` is told when the
    broker cannot take it (the run stays queued: beat's sweep starts it)."""
    from finops.pricing.tasks import reprice_run

    def enqueue() -> None:
        try:
            reprice_run.delay(run.pk)
        except Exception:  # the broker being down must not lose the saved price: beat's sweep runs it
            logger.warning("could not enqueue reprice run %s; the sweep will run it", run.pk, exc_info=True)
            if on_error is not None:
                on_error()

    transaction.on_commit(enqueue)


def _changed(
    *, principal: Principal, item, action: str, before: dict | None, fields, on_error=None
) -> RepriceRun:
    object_type = OBJECT_TYPES[type(item)]
    after = None if action == AuditAction.DELETE else _snapshot(item, fields)
    audit_record(
        principal=principal,
        team_id=None,
        object_type=object_type,
        object_id=item.pk,
        action=action,
        before=before,
        after=after,
    )
    scopes = _scopes(kind=type(item), before=before, after=after)
    label = "price override" if object_type == "price_override" else "discount"
    run = reprice_run_create(
        trigger=f"{label} {item.pk} ({item}) {action}d",
        scopes=scopes,
        principal=principal,
        object_type=object_type,
        object_id=item.pk,
    )
    reprice_enqueue(run, on_error=on_error)
    return run


def _save(item, *, principal: Principal) -> None:
    if item.pk is None and getattr(item, "created_by_id", None) is None:
        from finops.accounts.selectors import principal_is_authenticated, principal_is_token

        if principal_is_authenticated(principal) and not principal_is_token(principal):
            item.created_by = principal
    item.full_clean()
    item.save()


def price_override_taken(*, provider: str, model: str, effective_from, other_than=None) -> bool:
    """Whether another override of the model starts at that instant (one price per model and start)."""
    taken = ModelPriceOverride.objects.filter(provider=provider, model=model, effective_from=effective_from)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    return taken.exists()


@transaction.atomic
def price_override_create(*, principal: Principal, **fields) -> tuple[ModelPriceOverride, RepriceRun]:
    override = ModelPriceOverride(**fields)
    _save(override, principal=principal)
    run = _changed(
        principal=principal, item=override, action=AuditAction.CREATE, before=None, fields=OVERRIDE_FIELDS
    )
    return override, run


@transaction.atomic
def price_override_update(
    *, principal: Principal, override: ModelPriceOverride, changes: dict[str, Any]
) -> tuple[ModelPriceOverride, RepriceRun | None]:
    return override, _update(principal=principal, item=override, changes=changes, fields=OVERRIDE_FIELDS)


@transaction.atomic
def price_override_delete(*, principal: Principal, override: ModelPriceOverride) -> RepriceRun:
    return _delete(principal=principal, item=override, fields=OVERRIDE_FIELDS, what="price override")


def _update(*, principal: Principal, item, changes: dict[str, Any], fields, check=None) -> RepriceRun | None:
    """Change an override or a discount; audited, and its re-pricing queued, when anything changed."""
    before = _snapshot(item, fields)
    for name, value in changes.items():
        setattr(item, name, value)
    if check is not None:
        check(item)
    _save(item, principal=principal)
    item.refresh_from_db()
    if _snapshot(item, fields) == before:
        return None
    return _changed(principal=principal, item=item, action=AuditAction.UPDATE, before=before, fields=fields)


def _delete(*, principal: Principal, item, fields, what: str) -> RepriceRun:
    """Delete an override or a discount; audited, and the calls it priced re-priced."""
    before = _snapshot(item, fields)
    pk, text = item.pk, str(item)
    item.delete()
    item.pk = pk
    run = _changed(principal=principal, item=item, action=AuditAction.DELETE, before=before, fields=fields)
    run.trigger = f"{what} {pk} ({text}) deleted"
    run.save(update_fields=["trigger"])
    return run


def _discount_check(discount: NegotiatedDiscount) -> None:
    if discount.effective_to is not None and discount.effective_to <= discount.effective_from:
        raise ValidationError({"effective_to": ["must be after effective_from (or empty: open-ended)"]})


@transaction.atomic
def discount_create(*, principal: Principal, **fields) -> tuple[NegotiatedDiscount, RepriceRun]:
    discount = NegotiatedDiscount(**fields)
    discount.provider = discount.provider.strip().lower()
    _discount_check(discount)
    _save(discount, principal=principal)
    run = _changed(
        principal=principal, item=discount, action=AuditAction.CREATE, before=None, fields=DISCOUNT_FIELDS
    )
    return discount, run


@transaction.atomic
def discount_update(
    *, principal: Principal, discount: NegotiatedDiscount, changes: dict[str, Any]
) -> tuple[NegotiatedDiscount, RepriceRun | None]:
    run = _update(
        principal=principal, item=discount, changes=changes, fields=DISCOUNT_FIELDS, check=_discount_check
    )
    return discount, run


@transaction.atomic
def discount_delete(*, principal: Principal, discount: NegotiatedDiscount) -> RepriceRun:
    return _delete(principal=principal, item=discount, fields=DISCOUNT_FIELDS, what="discount")


FIELDS = {ModelPriceOverride: OVERRIDE_FIELDS, NegotiatedDiscount: DISCOUNT_FIELDS}


def price_snapshot(item: ModelPriceOverride | NegotiatedDiscount) -> dict[str, Any]:
    """What the audit log and a change's scope read of an override or a discount."""
    return _snapshot(item, FIELDS[type(item)])


def price_change_recorded(
    *,
    principal: Principal,
    item: ModelPriceOverride | NegotiatedDiscount,
    action: str,
    before: dict | None,
    on_error: Callable[[], None] | None = None,
) -> RepriceRun:
    """For a change saved elsewhere (the Django admin): audit it and queue its re-pricing run, as the
    services above do. `item` as saved (for a delete: as it was, with its id)."""
    return _changed(
        principal=principal,
        item=item,
        action=action,
        before=before,
        fields=FIELDS[type(item)],
        on_error=on_error,
    )
