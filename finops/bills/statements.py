"""The provider's side of a bill month: statement lines, read here and only here by bills.

Statement lines are written by ingest (connectors pull the providers' usage and cost reports; invoice
files are imported) and read by bills; this module is the one place the domain reads ingest's model
(pyproject's import-linter contract names it as the exception). Three kinds of line, per SPEC.md
"Bills":

- the **usage statement**: quantities per bucket (kind `usage`), priced by finops' own rates;
- the **cost statement**: amounts the provider's cost report gives (kind `cost`, any source but a file);
- the **invoice**: amounts from an invoice file (kind `cost`, source `focus:<file>` for a FOCUS CSV,
  `invoice:<file>` for a provider's own CSV export read through a saved column mapping).
"""

from __future__ import annotations

from datetime import date

from django.db.models import Q, QuerySet

from finops.bills.months import month_bounds
from ingest.connectors.models import StatementKind, StatementLine

INVOICE_SOURCE_PREFIXES: tuple[str, ...] = ("focus:", "invoice:")


def _invoice_q() -> Q:
    query = Q()
    for prefix in INVOICE_SOURCE_PREFIXES:
        query |= Q(source__startswith=prefix)
    return query


def _month_lines(*, provider: str, month: date) -> QuerySet[StatementLine]:
    start, end = month_bounds(month)
    return StatementLine.objects.filter(provider=provider, period_start__gte=start, period_start__lt=end)


def usage_lines(*, provider: str, month: date) -> QuerySet[StatementLine]:
    return _month_lines(provider=provider, month=month).filter(kind=StatementKind.USAGE)


def cost_lines(*, provider: str, month: date) -> QuerySet[StatementLine]:
    return _month_lines(provider=provider, month=month).filter(kind=StatementKind.COST).exclude(_invoice_q())


def invoice_lines(*, provider: str, month: date) -> QuerySet[StatementLine]:
    return _month_lines(provider=provider, month=month).filter(_invoice_q(), kind=StatementKind.COST)


def statement_providers(*, month: date) -> set[str]:
    """The providers with any statement line (usage, cost or invoice) in the month."""
    start, end = month_bounds(month)
    return set(
        StatementLine.objects.filter(period_start__gte=start, period_start__lt=end)
        .order_by()
        .values_list("provider", flat=True)
        .distinct()
    )
