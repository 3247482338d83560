"""API permissions: token scopes, and the org-wide roles for session users."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, BasePermission

from finops.accounts.selectors import (
    principal_has_scope,
    principal_is_token,
    principal_manages_billing,
    principal_token_team_id,
    writable_team_ids,
)


def principal_of(request):
    """Who is asking: the API token, else the signed-in person (None when anonymous)."""
    return request.auth or request.user


def has_scope(request, scope: str) -> bool:
    return principal_has_scope(principal=principal_of(request), scope=scope)


class ReadScope(BasePermission):
    message = "This API token lacks the 'read' scope."

    def has_permission(self, request, view) -> bool:
        return has_scope(request, "read")


class IngestScope(BasePermission):
    """A token with the 'ingest' scope, or a person who may write data for some team (a viewer, who
    may change nothing, is refused at the door rather than answered with every row rejected)."""

    message = "This API token lacks the 'ingest' scope."

    def has_permission(self, request, view) -> bool:
        if not has_scope(request, "ingest"):
            return False
        principal = principal_of(request)
        if principal_is_token(principal) or writable_team_ids(principal=principal) != set():
            return True
        self.message = (
            "You may not send data for any team: a viewer only sees; a team role other than viewer may send."
        )
        return False


class ReadOrManageScope(BasePermission):
    """Reading needs `read` or `manage` (a manage token reads what it changes); changing needs `manage`.
    People hold every scope: their roles decide, through the restricting queryset."""

    message = "This API token lacks the 'manage' scope (or 'read', to read)."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS and has_scope(request, "read"):
            return True
        return has_scope(request, "manage")


# --- organisation billing data (statements, connectors, bills) ---


def _refuse_team_bound_token(principal) -> None:
    if principal_token_team_id(principal) is not None:
        raise NotFound()  # a team's token learns nothing about what lies outside its team


class BillingRead(BasePermission):
    """Session users with an org role, or an org-wide token with the 'read' scope."""

    message = "Provider statements are organisation billing data: only the admin and finops roles see them."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if not principal_is_token(principal):
            return principal_manages_billing(principal)
        _refuse_team_bound_token(principal)
        if not principal_has_scope(principal=principal, scope="read"):
            self.message = "This API token lacks the 'read' scope."
            return False
        return True


class ConnectorManage(BasePermission):
    message = "Only people with the admin or finops role may create or run connectors; API tokens may not."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        _refuse_team_bound_token(principal)
        return principal_manages_billing(principal)
