"""The model-tier mapping: which models are flagship, mid or small (SPEC.md roles: ml edits the
"model-tier mapping used by savings and what-if"; the Models page reads it for its shares).

It is organisation data, not a team's: a model is not owned by a team, and the same model is the same
tier for every team that calls it. So every signed-in person and every API token with `read` sees the
whole mapping, and the ml role of *any* team (with the admin and finops org roles) may change it for
the whole organisation: an ml engineer curates the catalogue of models, not one team's spend. API
tokens never change it (`manage` is what an sre may do, and an sre may not). Every change is audited
(finops/modeltiers/services.py), with no team, so the audit log shows it to admin and finops.

A row names a model as calls name it, or as the genai-prices catalog names it: a dated snapshot
(`claude-sonnet-4-5-20250929`) takes the tier of its catalog model (`claude-sonnet-4-5`) unless a row
names the snapshot itself. A model no row names is *unmapped*, shown as such, never guessed.
"""

from __future__ import annotations

from typing import Self

from django.db import models

from finops.accounts.querysets import RestrictedQuerySet
from finops.accounts.selectors import (
    principal_is_authenticated,
    principal_is_token,
    principal_may_edit_model_tiers,
)


class Tier(models.TextChoices):
    FLAGSHIP = "flagship", "flagship"
    MID = "mid", "mid"
    SMALL = "small", "small"


UNMAPPED = "unmapped"  # the tier shown for a model no row names (not a choice: never stored)


class ModelTierQuerySet(RestrictedQuerySet):
    """Seen by every signed-in person and every API token; changed by people with the admin or finops
    org role, or the ml role in any team (see the module docstring for why org-wide)."""

    def _restricted(self, principal, action: str) -> Self:
        if action == "view":
            allowed = principal_is_token(principal) or principal_is_authenticated(principal)
        else:
            allowed = principal_may_edit_model_tiers(principal=principal)
        return self.all() if allowed else self.none()


class ModelTier(models.Model):
    provider = models.CharField(max_length=64, help_text="as events name it, e.g. anthropic, openai")
    model = models.CharField(
        max_length=128, help_text="as calls or the genai-prices catalog name it, e.g. claude-sonnet-4-5"
    )
    tier = models.CharField(max_length=16, choices=Tier.choices)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelTierQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="model_tier_provider_model_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}: {self.tier}"
