"""API permissions: token scopes, and the org-wide roles for session users."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from finops.accounts.selectors import principal_has_scope


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
    message = "This API token lacks the 'ingest' scope."

    def has_permission(self, request, view) -> bool:
        return has_scope(request, "ingest")


class ReadOrManageScope(BasePermission):
    """Reading needs `read` or `manage` (a manage token reads what it changes); changing needs `manage`.
    People hold every scope: their roles decide, through the restricting queryset."""

    message = "This API token lacks the 'manage' scope (or 'read', to read)."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS and has_scope(request, "read"):
            return True
        return has_scope(request, "manage")
