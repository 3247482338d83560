"""Who may see provider statements and run connectors: they are organisation billing data (the
permissions live with the API's, in finops.api.permissions, since bills reads the same data)."""

from __future__ import annotations

from finops.api.permissions import BillingRead, ConnectorManage

__all__ = ["BillingRead", "ConnectorManage"]
