"""Writes about people, teams and tokens."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from finops.accounts.models import ApiToken, Team, TokenScope, User

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
