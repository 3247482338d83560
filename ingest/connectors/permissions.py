"""Who may see provider statements and run connectors: they are organisation billing data."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from finops.accounts.models import ApiToken


def user_manages_billing(user) -> bool:
    """People with the admin or finops org role (and superusers); never an API token."""
    return bool(user and user.is_authenticated and not isinstance(user, ApiToken) and user.sees_every_team)


class BillingRead(BasePermission):
    """Session users with an org role, or an org-wide token with the 'read' scope."""

    message = "Provider statements are organisation billing data: only the admin and finops roles see them."

    def has_permission(self, request, view) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is None:
            return user_manages_billing(request.user)
        if token.team_id is not None:
            raise NotFound()  # a team's token learns nothing about what lies outside its team
        if "read" not in token.scopes:
            self.message = "This API token lacks the 'read' scope."
            return False
        return True


class ConnectorManage(BasePermission):
    message = "Only people with the admin or finops role may create or run connectors; API tokens may not."

    def has_permission(self, request, view) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None and token.team_id is not None:
            raise NotFound()
        return token is None and user_manages_billing(request.user)
