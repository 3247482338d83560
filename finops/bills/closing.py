"""Closing and reopening a bill month (SPEC.md, "Bills": a closed month's figures never change; re-opening
is audited). Writes only; the reads of a month go through finops.bills.telemetry and chargeback.

Closing a month, in one transaction holding the month's row locked:

1. brings the late-event adjustments shown in it up to date (finops.bills.adjustments), so what the
   month charges back for earlier closed months is frozen with it;
2. copies the month's daily rollups into the snapshot (ClosedMonthRollup) in one INSERT ... SELECT;
3. freezes each provider's charge-back basis (ClosedMonthBasis: invoice, else cost statement, else
   telemetry, with its amounts);
4. marks it closed and writes the audit entry (who, when, before, after).

Reopening drops the snapshot and the frozen bases, withdraws the month's late-event adjustments still
shown in open months (its own figures now include those events), marks it open, and is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from finops.accounts.selectors import Principal, principal_is_authenticated, principal_is_token
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.bills.adjustments import (
    late_adjustments_materialise,
    late_adjustments_withdraw,
    month_states_changed,
)
from finops.bills.chargeback import provider_bases_live
from finops.bills.models import BillMonth, ClosedMonthBasis, ClosedMonthRollup, MonthState
from finops.bills.months import month_bounds, month_next
from finops.ledger.models import DailyRollup
from finops.ledger.tokens import TOKEN_TYPES

# the columns the snapshot copies from DailyRollup, in one list so the INSERT and SELECT agree
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "day",
    "team_id",
    "agent_id",
    "provider",
    "model",
    "calls",
    "unpriced_calls",
    "batch_calls",
    "cost_usd",
    *TOKEN_TYPES,
    *(f"cost_{name}_usd" for name in TOKEN_TYPES),
)
AUDIT_OBJECT_TYPE = "bill_month"


class MonthNotEnded(ValueError):
    """The month has not ended yet (in UTC): its calls are still arriving."""


class MonthStateConflict(ValueError):
    """Closing a closed month, or reopening an open one."""


@dataclass(frozen=True)
class MonthChange:
    month: BillMonth
    snapshot_rows: int
    telemetry_usd: Decimal
    adjustments_withdrawn: int = 0


def _month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def _state_of(row: BillMonth) -> dict:
    return {
        "month": _month_label(row.month),
        "state": row.state,
        "closed_at": row.closed_at,
        "closed_by": row.closed_by.get_username() if row.closed_by_id else None,
        "reason": row.reason,
    }


def _locked_month(month: date) -> BillMonth:
    """The month's row, created open if it has none, locked until the transaction ends: two closes (or
    a close and a reopen) of one month take turns."""
    BillMonth.objects.get_or_create(month=month)
    return BillMonth.objects.select_for_update(of=("self",)).select_related("closed_by").get(month=month)


def _snapshot_copy(month: date) -> int:
    start, end = month_bounds(month)
    columns = ", ".join(SNAPSHOT_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ClosedMonthRollup._meta.db_table} (month, {columns}) "
            f"SELECT %s, {columns} FROM {DailyRollup._meta.db_table} WHERE day >= %s AND day < %s",
            [month, start.date(), end.date()],
        )
        return cursor.rowcount


def month_close(
    *, principal: Principal, month: date, reason: str = "", now: datetime | None = None
) -> MonthChange:
    """Close a month that has ended. Raises MonthNotEnded for the current or a future month, and
    MonthStateConflict for a month closed already (closing is not repeated silently: the snapshot
    would be the first close's, whatever the second meant)."""
    now = now or timezone.now()
    if month_next(month) > now.astimezone(UTC).date():
        raise MonthNotEnded(
            f"{_month_label(month)} has not ended: it can be closed from "
            f"{month_next(month):%Y-%m-%d} 00:00 UTC, when its last calls are in"
        )
    with transaction.atomic():
        row = _locked_month(month)
        if row.state == MonthState.CLOSED:
            raise MonthStateConflict(
                f"{_month_label(month)} is closed already (since {row.closed_at:%Y-%m-%d %H:%M} UTC); "
                "reopen it first to close it again"
            )
        before = _state_of(row)
        # what this month shows for earlier closed months is frozen with it: bring it up to date first
        # (after the close they owe nothing more here, so their totals stay as they are)
        late_adjustments_materialise()
        ClosedMonthRollup.objects.filter(month=month).delete()  # none, unless written by hand
        ClosedMonthBasis.objects.filter(month=month).delete()
        snapshot_rows = _snapshot_copy(month)
        bases = provider_bases_live(month=month)
        ClosedMonthBasis.objects.bulk_create(
            ClosedMonthBasis(
                month=month,
                provider=basis.provider,
                basis=basis.basis,
                basis_note=basis.basis_note[:256],
                token_usd=basis.token_usd,
                other_usd=basis.other_usd,
            )
            for basis in bases
        )
        telemetry_usd = ClosedMonthRollup.objects.filter(month=month).aggregate(total=Sum("cost_usd"))[
            "total"
        ] or Decimal(0)
        row.state = MonthState.CLOSED
        row.late_seen_calls = row.late_seen_cost_usd = None  # worked out at the next materialisation
        row.closed_at = now
        row.closed_by = principal if _is_person(principal) else None
        row.reason = reason
        row.save()
        audit_record(
            principal=principal,
            team_id=None,
            object_type=AUDIT_OBJECT_TYPE,
            object_id=_month_label(month),
            action=AuditAction.UPDATE,
            before=before,
            after={
                **_state_of(row),
                "snapshot_rows": snapshot_rows,
                "telemetry_usd": str(telemetry_usd),
                "bases": {basis.provider: basis.basis for basis in bases},
            },
        )
    return MonthChange(month=row, snapshot_rows=snapshot_rows, telemetry_usd=telemetry_usd)


def month_reopen(*, principal: Principal, month: date, reason: str) -> MonthChange:
    """Reopen a closed month: its figures are live again (late events included). The reason is
    required (it is the audit's answer to "why did last month's numbers change?")."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why the month is reopened: the reason is kept in the audit log")
    with transaction.atomic():
        row = _locked_month(month)
        if row.state != MonthState.CLOSED:
            raise MonthStateConflict(f"{_month_label(month)} is open: there is nothing to reopen")
        before = _state_of(row)
        telemetry_usd = ClosedMonthRollup.objects.filter(month=month).aggregate(total=Sum("cost_usd"))[
            "total"
        ] or Decimal(0)
        snapshot_rows, _ = ClosedMonthRollup.objects.filter(month=month).delete()
        ClosedMonthBasis.objects.filter(month=month).delete()
        row.state = MonthState.OPEN
        row.closed_at = row.closed_by = None
        row.reason = reason
        row.late_seen_calls = row.late_seen_cost_usd = None
        row.save()
        withdrawn = late_adjustments_withdraw(month=month)
        month_states_changed()
        audit_record(
            principal=principal,
            team_id=None,
            object_type=AUDIT_OBJECT_TYPE,
            object_id=_month_label(month),
            action=AuditAction.UPDATE,
            before={**before, "telemetry_usd": str(telemetry_usd)},
            after={
                **_state_of(row),
                "snapshot_rows_dropped": snapshot_rows,
                "late_event_adjustments_withdrawn": withdrawn,
            },
        )
    return MonthChange(
        month=row, snapshot_rows=snapshot_rows, telemetry_usd=telemetry_usd, adjustments_withdrawn=withdrawn
    )


def _is_person(principal: Principal) -> bool:
    return principal_is_authenticated(principal) and not principal_is_token(principal)
