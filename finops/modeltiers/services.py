"""Writes of the model-tier mapping, each audited (who, when, before, after) with no team: the mapping is
organisation data (finops/modeltiers/models.py). Names are kept in lower case, as the price book
matches them."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from finops.accounts.selectors import Principal
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.modeltiers.models import ModelTier


def model_tier_snapshot(model_tier: ModelTier) -> dict[str, Any]:
    return {"provider": model_tier.provider, "model": model_tier.model, "tier": model_tier.tier}


def _audit(*, principal: Principal, model_tier: ModelTier, action: str, before, after) -> None:
    audit_record(
        principal=principal,
        team_id=None,
        object_type="model_tier",
        object_id=model_tier.pk,
        action=action,
        before=before,
        after=after,
    )


@transaction.atomic
def model_tier_create(*, principal: Principal, provider: str, model: str, tier: str) -> ModelTier:
    model_tier = ModelTier(provider=provider.strip().lower(), model=model.strip().lower(), tier=tier)
    model_tier.full_clean()
    model_tier.save()
    _audit(
        principal=principal,
        model_tier=model_tier,
        action=AuditAction.CREATE,
        before=None,
        after=model_tier_snapshot(model_tier),
    )
    return model_tier


@transaction.atomic
def model_tier_update(*, principal: Principal, model_tier: ModelTier, changes: dict[str, Any]) -> ModelTier:
    before = model_tier_snapshot(model_tier)
    for name, value in changes.items():
        setattr(model_tier, name, value.strip().lower() if name in {"provider", "model"} else value)
    model_tier.full_clean()
    model_tier.save()
    after = model_tier_snapshot(model_tier)
    if after != before:
        _audit(
            principal=principal, model_tier=model_tier, action=AuditAction.UPDATE, before=before, after=after
        )
    return model_tier


@transaction.atomic
def model_tier_delete(*, principal: Principal, model_tier: ModelTier) -> None:
    _audit(
        principal=principal,
        model_tier=model_tier,
        action=AuditAction.DELETE,
        before=model_tier_snapshot(model_tier),
        after=None,
    )
    model_tier.delete()


@transaction.atomic
def model_tier_set(*, principal: Principal, provider: str, model: str, tier: str) -> ModelTier:
    """Map a model to a tier: its row changed if it has one, else a new row (the Models page's form)."""
    existing = (
        ModelTier.objects.select_for_update()
        .filter(provider=provider.strip().lower(), model=model.strip().lower())
        .first()
    )
    if existing is None:
        return model_tier_create(principal=principal, provider=provider, model=model, tier=tier)
    return model_tier_update(principal=principal, model_tier=existing, changes={"tier": tier})
