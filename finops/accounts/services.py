"""Writes about people, teams and tokens."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from finops.accounts.models import ApiToken, Team, TokenScope, User
from finops.accounts.selectors import Principal, principal_manages_billing
from finops.audit.services import audit_record

TOKEN_PREFIX = "fo_"  # noqa: S105 (a prefix, not a secret)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(
    *, name: str, scopes: list[str], team: Team | None = None, created_by: User | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns it and its secret, which is never stored and cannot be shown again."""
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {unknown or scopes}; choose from {', '.join(TokenScope.values)}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name,
        prefix=secret[:10],
        digest=token_digest(secret),
        scopes=sorted(set(scopes)),
        team=team,
        created_by=created_by,
    )
    return token, secret


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token from now on (idempotent: an already revoked token keeps its first revocation time)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


@transaction.atomic
def team_get_or_create(*, slug: str, name: str | None = None) -> Team:
    team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return team


class BudgetNotAllowed(PermissionError):
    """Only the finops and admin org roles set team budgets (SPEC.md, roles); never an API token."""


def team_budget_set(*, team: Team, monthly_budget_usd: Decimal | None, principal: Principal) -> Team:
    """Set (or clear, with None) a team's monthly budget; the change is in the audit log."""
    if not principal_manages_billing(principal):
        raise BudgetNotAllowed("setting a team's monthly budget needs the finops or admin role")
    if monthly_budget_usd is not None and monthly_budget_usd < 0:
        raise ValueError("a monthly budget cannot be negative")
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        before = team.monthly_budget_usd
        if before != monthly_budget_usd:
            team.monthly_budget_usd = monthly_budget_usd
            team.save(update_fields=["monthly_budget_usd"])
            audit_record(
                principal=principal,
                team_id=team.pk,
                object_type="team",
                object_id=team.pk,
                action="update",
                before={"monthly_budget_usd": before},
                after={"monthly_budget_usd": monthly_budget_usd},
            )
    return team
