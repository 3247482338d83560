"""API permissions: token scopes, and the org-wide roles for session users."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from finops.accounts.models import ApiToken


def has_scope(request, scope: str) -> bool:
    if isinstance(request.auth, ApiToken):
        return scope in request.auth.scopes
    return bool(request.user and request.user.is_authenticated)


class ReadScope(BasePermission):
    message = "This API token lacks the 'read' scope."

    def has_permission(self, request, view) -> bool:
        return has_scope(request, "read")


class IngestScope(BasePermission):
    message = "This API token lacks the 'ingest' scope."

    def has_permission(self, request, view) -> bool:
        return has_scope(request, "ingest")
