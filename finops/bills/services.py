"""Writes of bills' reconciliation: finops' note on a line and whether it is explained (audited)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from finops.accounts.selectors import Principal, principal_is_authenticated, principal_is_token
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.bills.models import ReconciliationLine


def reconciliation_line_snapshot(line: ReconciliationLine) -> dict[str, Any]:
    return {
        "provider": line.provider,
        "month": f"{line.month:%Y-%m}",
        "day": line.day.isoformat(),
        "model": line.model,
        "token_type": line.token_type,
        "line_item": line.line_item,
        "note": line.note,
        "explained": line.explained,
    }


@transaction.atomic
def reconciliation_line_annotate(
    *, principal: Principal, line: ReconciliationLine, changes: dict[str, Any]
) -> ReconciliationLine:
    """Set the line's note and/or explained mark; the audit log keeps who, when, before and after."""
    line = ReconciliationLine.objects.select_for_update().get(pk=line.pk)
    before = reconciliation_line_snapshot(line)
    for name in ("note", "explained"):
        if name in changes:
            setattr(line, name, changes[name])
    person = principal_is_authenticated(principal) and not principal_is_token(principal)
    line.updated_by = principal if person else None
    line.updated_at = timezone.now()
    line.save(update_fields=["note", "explained", "updated_by", "updated_at"])
    audit_record(
        principal=principal,
        team_id=None,
        object_type="reconciliation_line",
        object_id=line.pk,
        action=AuditAction.UPDATE,
        before=before,
        after=reconciliation_line_snapshot(line),
    )
    return line
