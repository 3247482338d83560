"""Restricting querysets: `restrict(principal, action)` is the only way views and the API read a
team-owned model (NetBox `utilities/querysets.py` RestrictedQuerySet).

A model opts in with one line, e.g. `objects = TeamOwnedQuerySet.as_manager()`. `action` is "view"
(visible_team_ids) or "change" (writable_team_ids); both come from finops.accounts.selectors.
"""

from __future__ import annotations

from typing import Self

from django.db import models

ACTIONS = ("view", "change")


class RestrictedQuerySet(models.QuerySet):
    """Base: subclasses say which rows a principal may see or change in `_restricted`."""

    def restrict(self, principal, action: str = "view") -> Self:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        return self._restricted(principal, action)

    def _restricted(self, principal, action: str) -> Self:
        raise NotImplementedError(f"{type(self).__name__} must say which rows a principal may read")


class TeamOwnedQuerySet(RestrictedQuerySet):
    """Rows owned by a team through `team_field` (a foreign key to Team, or "pk" for Team itself).
    Every team (None) also yields rows of no team; a team-bound principal never sees those."""

    team_field = "team"

    def _restricted(self, principal, action: str) -> Self:
        from finops.accounts.selectors import team_ids_for

        team_ids = team_ids_for(principal=principal, action=action)
        if team_ids is None:
            return self.all()
        return self.filter(**{f"{self.team_field}__in": team_ids})


class AdministeredQuerySet(TeamOwnedQuerySet):
    """Team-owned records of who may do what (memberships, API tokens): seen like team data, changed
    only by org admins (SPEC.md, roles: admin changes users, teams, roles and API tokens)."""

    def _restricted(self, principal, action: str) -> Self:
        from finops.accounts.selectors import principal_is_org_admin

        if action == "change":
            return self.all() if principal_is_org_admin(principal) else self.none()
        return super()._restricted(principal, "view")


class OrgDataQuerySet(RestrictedQuerySet):
    """Organisation billing data (statement lines, connectors): no team owns it. Seen by the admin and
    finops roles and org-wide tokens; changed by the admin and finops roles; a team-bound principal
    gets none of it."""

    def _restricted(self, principal, action: str) -> Self:
        from finops.accounts.selectors import principal_manages_billing, visible_team_ids

        if action == "view":
            allowed = visible_team_ids(principal=principal) is None
        else:
            allowed = principal_manages_billing(principal)
        return self.all() if allowed else self.none()


class CreatorOwnedQuerySet(RestrictedQuerySet):
    """Rows that belong to the person who made them (`creator_field`); people with an org role see and
    change them all. API tokens make none, so they get none."""

    creator_field = "created_by"

    def _restricted(self, principal, action: str) -> Self:
        from finops.accounts.selectors import principal_is_authenticated, principal_is_token

        if principal_is_token(principal) or not principal_is_authenticated(principal):
            return self.none()
        if principal.sees_every_team:
            return self.all()
        return self.filter(**{self.creator_field: principal})
