"""Who may see provider statements and run connectors: they are organisation billing data (the
permissions live with the API's, in finops.api.permissions, since bills reads the same data); and who
may import an invoice file through the API."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from finops.accounts.selectors import (
    principal_has_scope,
    principal_is_token,
    principal_manages_billing,
    principal_token_team_id,
)
from finops.api.permissions import BillingRead, ConnectorManage, principal_of

__all__ = ["BillingRead", "ConnectorManage", "InvoiceImportPermission"]


class InvoiceImportPermission(BasePermission):
    """Importing an invoice file: people with the admin or finops role, and org-wide tokens with the
    'ingest' scope (a bill dropped by a scheduled job); a team's token learns nothing (404)."""

    message = "Invoices are organisation billing data: only the admin and finops roles import them."

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if not principal_is_token(principal):
            return principal_manages_billing(principal)
        if principal_token_team_id(principal) is not None:
            raise NotFound()  # a team's token learns nothing about what lies outside its team
        if not principal_has_scope(principal=principal, scope="ingest"):
            self.message = "This API token lacks the 'ingest' scope."
            return False
        return True
