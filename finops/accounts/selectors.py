"""Reads about who may see what. The one door for team scoping: every restricting queryset
(finops.accounts.querysets) and every permission asks these functions, never a model's type."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Literal

from django.db.models.signals import post_delete, post_save

from finops.accounts.models import ApiToken, Membership, OrgRole, TeamRole, TokenScope, User

Principal = User | ApiToken | None
Action = Literal["view", "change"]


@dataclass(frozen=True)
class TeamMembership:
    team_id: int
    team_slug: str
    team_name: str
    role: str


# bumped by every saved or deleted Membership, so a memo read before a change is never used after it
_MEMBERSHIPS_GENERATION = count(1)
_memberships_generation = 0


def _memberships_changed(**kwargs) -> None:
    global _memberships_generation
    _memberships_generation = next(_MEMBERSHIPS_GENERATION)


post_save.connect(_memberships_changed, sender=Membership, dispatch_uid="finops-memberships-memo")
post_delete.connect(_memberships_changed, sender=Membership, dispatch_uid="finops-memberships-memo")


def memberships_of(*, user: User) -> list[TeamMembership]:
    """A person's teams and role in each, slug order: one query per user object, then remembered on it.
    A request's `request.user` is one object for one request, so the navigation, the page's scoping and
    its permission checks share this one read instead of asking the database each."""
    memo = getattr(user, "_finops_memberships", None)
    if memo is not None and memo[0] == _memberships_generation:
        return memo[1]
    generation = _memberships_generation
    rows = [
        TeamMembership(*row)
        for row in Membership.objects.filter(user=user)
        .order_by("team__slug")
        .values_list("team_id", "team__slug", "team__name", "role")
    ]
    user._finops_memberships = (generation, rows)
    return rows


def principal_is_token(principal: Principal) -> bool:
    return isinstance(principal, ApiToken)


def principal_is_authenticated(principal: Principal) -> bool:
    return principal is not None and bool(getattr(principal, "is_authenticated", False))


def principal_has_scope(*, principal: Principal, scope: str) -> bool:
    """A token's scope; a signed-in person holds every scope (their roles decide the rest)."""
    if principal_is_token(principal):
        return scope in principal.scopes
    return principal_is_authenticated(principal)


def principal_token_team_id(principal: Principal) -> int | None:
    """The team a team-bound token belongs to; None for people and org-wide tokens."""
    return principal.team_id if principal_is_token(principal) else None


def principal_is_org_admin(principal: Principal) -> bool:
    """A person with the admin org role, or a superuser (tokens never administer)."""
    return (
        principal_is_authenticated(principal)
        and not principal_is_token(principal)
        and principal.is_active
        and (principal.is_superuser or principal.org_role == OrgRole.ADMIN)
    )


def principal_manages_billing(principal: Principal) -> bool:
    """People with the admin or finops org role (and superusers); never an API token."""
    return (
        principal_is_authenticated(principal)
        and not principal_is_token(principal)
        and principal.sees_every_team
    )


def visible_team_ids(*, principal: Principal) -> set[int] | None:
    """Team ids the principal may see; None means every team. Anonymous sees none."""
    if principal_is_token(principal):
        return None if principal.team_id is None else {principal.team_id}
    if not principal_is_authenticated(principal):
        return set()
    if principal.sees_every_team:
        return None
    return {membership.team_id for membership in memberships_of(user=principal)}


def writable_team_ids(*, principal: Principal) -> set[int] | None:
    """Team ids the principal may write data for (events, tasks, quarantine replay); None: every team.

    Org roles admin and finops and superusers: every team; a team member with a role other than viewer:
    their teams; a token with the `ingest` scope: its team, or every team if org-wide."""
    return _team_ids_by_scope_or_role(
        principal=principal,
        scope=TokenScope.INGEST,
        roles=[role for role in TeamRole if role != TeamRole.VIEWER],
    )


def _team_ids_by_scope_or_role(*, principal: Principal, scope: str, roles: list[str]) -> set[int] | None:
    """A token's team (None: every team) if it holds `scope`; a person's teams where their role is one
    of `roles` (None: every team for the admin and finops org roles)."""
    if principal_is_token(principal):
        if scope not in principal.scopes:
            return set()
        return None if principal.team_id is None else {principal.team_id}
    if not principal_is_authenticated(principal):
        return set()
    if principal.sees_every_team:
        return None
    return {membership.team_id for membership in memberships_of(user=principal) if membership.role in roles}


def team_ids_for(*, principal: Principal, action: Action) -> set[int] | None:
    """visible_team_ids for "view", writable_team_ids for "change"."""
    if action == "view":
        return visible_team_ids(principal=principal)
    if action == "change":
        return writable_team_ids(principal=principal)
    raise ValueError(f"action must be 'view' or 'change', not {action!r}")


def team_role(*, user: User, team_id: int) -> str | None:
    if user.is_superuser:
        return "admin"
    if user.org_role:
        return user.org_role
    return next(
        (membership.role for membership in memberships_of(user=user) if membership.team_id == team_id), None
    )


def principal_may_create_teams(principal: Principal) -> bool:
    """Whether data for a team that does not exist yet creates it: org admins and org-wide ingest tokens."""
    if principal_is_token(principal):
        return principal.team_id is None and TokenScope.INGEST in principal.scopes
    return principal_is_org_admin(principal)


# Team roles that may change a team's guardrails: allowances, kill switches (SPEC.md, roles).
GUARDING_ROLES = (TeamRole.SRE, TeamRole.TECH_LEAD)


def guarding_team_ids(*, principal: Principal) -> set[int] | None:
    """Team ids whose guardrails (allowances, kill switches) the principal may change; None: every team.

    Org roles admin and finops and superusers: every team; sre and tech_lead: their teams; a token with
    the `manage` scope: its team, or every team if org-wide."""
    return _team_ids_by_scope_or_role(
        principal=principal, scope=TokenScope.MANAGE, roles=list(GUARDING_ROLES)
    )


def principal_may_edit_model_tiers(*, principal: Principal) -> bool:
    """Who may change the model-tier mapping (organisation data, finops/modeltiers/models.py): people
    with the admin or finops org role (and superusers), and anyone holding the ml role in a team; never
    an API token (SPEC.md: `manage` does what an sre may, and an sre may not)."""
    if principal_is_token(principal) or not principal_is_authenticated(principal):
        return False
    if principal.sees_every_team:
        return True
    return Membership.objects.filter(user=principal, role=TeamRole.ML).exists()
