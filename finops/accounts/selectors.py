"""Reads about who may see what."""

from __future__ import annotations

from finops.accounts.models import ApiToken, Membership, User


def visible_team_ids(*, principal: User | ApiToken | None) -> set[int] | None:
    """Team ids the principal may see; None means every team. Anonymous sees none."""
    if isinstance(principal, ApiToken):
        return None if principal.team_id is None else {principal.team_id}
    if principal is None or not getattr(principal, "is_authenticated", False):
        return set()
    if principal.sees_every_team:
        return None
    return set(Membership.objects.filter(user=principal).values_list("team_id", flat=True))


def team_role(*, user: User, team_id: int) -> str | None:
    if user.is_superuser:
        return "admin"
    if user.org_role:
        return user.org_role
    return Membership.objects.filter(user=user, team_id=team_id).values_list("role", flat=True).first()
