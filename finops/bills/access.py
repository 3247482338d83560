"""Who may read and change bills (SPEC.md roles: finops and admin). Bills are organisation data, as the
provider statements are (ingest/connectors/permissions.py holds the same rule for those): the domain
cannot import the edge, so bills states it here."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from finops.accounts.selectors import (
    principal_has_scope,
    principal_is_token,
    principal_manages_billing,
    principal_token_team_id,
)
from finops.api.permissions import principal_of


def _refuse_team_bound_token(principal) -> None:
    if principal_token_team_id(principal) is not None:
        raise NotFound()  # a team's token learns nothing about what lies outside its team


class BillsRead(BasePermission):
    """People with the admin or finops role, or an org-wide token with the 'read' scope."""

    message = "Bills are organisation billing data: only the admin and finops roles see them."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if not principal_is_token(principal):
            return principal_manages_billing(principal)
        _refuse_team_bound_token(principal)
        if not principal_has_scope(principal=principal, scope="read"):
            self.message = "This API token lacks the 'read' scope."
            return False
        return True


class BillsManage(BasePermission):
    """Closing and reopening months: people with the admin or finops role; never an API token."""

    message = "Only people with the admin or finops role may close or reopen a month; API tokens may not."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        _refuse_team_bound_token(principal)
        return principal_manages_billing(principal)
