"""Writes of the guardrails: allowances (audited, their counter seeded at creation), the guard check's
reservations, and the kill switch's record of a killed task."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from finops.accounts.selectors import Principal
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.guardrails.models import Allowance, AllowanceUsage, Reservation
from finops.guardrails.sql import ALLOWANCE_SEED_LOCK
from finops.guardrails.windows import window_bounds
from finops.ledger.models import Call, Task, TaskStatus
from finops.ledger.tokens import TOKEN_TYPES

ALLOWANCE_FIELDS = ("team", "agent", "window", "limit_tokens", "limit_usd", "warn_at", "action")
# a change of any of these changes which calls the counter covers: it is counted again from the calls
COUNTED_FIELDS = {"team", "agent", "window"}


def allowance_snapshot(allowance: Allowance) -> dict[str, Any]:
    """The allowance's settings as the audit log keeps them."""
    return {
        "team": allowance.team.slug,
        "agent": allowance.agent.name if allowance.agent_id else None,
        "window": allowance.window,
        "limit_tokens": allowance.limit_tokens,
        "limit_usd": None if allowance.limit_usd is None else str(allowance.limit_usd),
        "warn_at": allowance.warn_at,
        "action": allowance.action,
    }


def _seed_lock() -> None:
    """Wait for the writers in flight and hold new ones until this transaction commits (see sql.py)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ALLOWANCE_SEED_LOCK])


def allowance_usage_seed(*, allowance: Allowance, now: datetime | None = None) -> AllowanceUsage:
    """Count the calls of the allowance's current window into its counter, from the ledger: once, when
    the allowance is created or starts covering other calls. The writer counts every later call."""
    start, end = window_bounds(window=allowance.window, at=now or timezone.now())
    calls = Call.objects.filter(team_id=allowance.team_id, timestamp__gte=start, timestamp__lt=end)
    if allowance.agent_id:
        calls = calls.filter(agent_id=allowance.agent_id)
    totals = calls.aggregate(
        tokens=Coalesce(Sum(sum((F(name) for name in TOKEN_TYPES[1:]), F(TOKEN_TYPES[0]))), 0),
        usd=Coalesce(Sum("cost_usd"), Decimal(0)),
        unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
        calls=Count("id"),
    )
    AllowanceUsage.objects.filter(allowance=allowance).delete()
    return AllowanceUsage.objects.create(
        allowance=allowance,
        window_start=start,
        used_tokens=totals["tokens"],
        used_usd=totals["usd"],
        unpriced_calls=totals["unpriced"],
        calls=totals["calls"],
    )


def _audit(*, principal: Principal, allowance: Allowance, action: str, before, after) -> None:
    audit_record(
        principal=principal,
        team_id=allowance.team_id,
        object_type="allowance",
        object_id=allowance.pk,
        action=action,
        before=before,
        after=after,
    )


@transaction.atomic
def allowance_create(*, principal: Principal, created_by=None, **fields: Any) -> Allowance:
    """Create an allowance, count its current window from the ledger, and audit it."""
    _seed_lock()
    allowance = Allowance.objects.create(created_by=created_by, **fields)
    allowance_usage_seed(allowance=allowance)
    _audit(
        principal=principal,
        allowance=allowance,
        action=AuditAction.CREATE,
        before=None,
        after=allowance_snapshot(allowance),
    )
    return allowance


@transaction.atomic
def allowance_update(*, principal: Principal, allowance: Allowance, changes: dict[str, Any]) -> Allowance:
    """Change an allowance's settings and audit it; a new scope or window is counted again."""
    before = allowance_snapshot(allowance)
    recount = any(
        name in COUNTED_FIELDS and getattr(allowance, name) != value for name, value in changes.items()
    )
    if recount:
        _seed_lock()
    for name, value in changes.items():
        setattr(allowance, name, value)
    allowance.full_clean(exclude=["created_by"])
    allowance.save()
    if recount:
        allowance_usage_seed(allowance=allowance)
    after = allowance_snapshot(allowance)
    if after != before:
        _audit(
            principal=principal, allowance=allowance, action=AuditAction.UPDATE, before=before, after=after
        )
    return allowance


@transaction.atomic
def allowance_delete(*, principal: Principal, allowance: Allowance) -> None:
    _audit(
        principal=principal,
        allowance=allowance,
        action=AuditAction.DELETE,
        before=allowance_snapshot(allowance),
        after=None,
    )
    allowance.delete()


def task_kill(*, team_id: int, task_id: str) -> None:
    """Record a task its kill switch stopped as `killed` (ended now, unless it had already ended): in a
    statement of its own, outside any transaction that holds counter locks."""
    Task.objects.filter(team_id=team_id, task_id=task_id).exclude(status=TaskStatus.KILLED).update(
        status=TaskStatus.KILLED, ended_at=Coalesce(F("ended_at"), timezone.now())
    )


RESERVATION_KEPT = timedelta(hours=1)


def reservations_purge(*, now: datetime | None = None) -> int:
    """Delete reservations settled or expired over an hour ago: they no longer count anywhere (the
    settled call is in the counters). Each is first released from its allowance's reserved totals
    under the allowances' row locks, taken in id order as a guard check takes them, so the purge and a
    check never wait on each other in a circle. The deletes come after, without the locks: a released
    row changes no total, and guard checks are not held up while thousands go. Then each allowance's
    reserved totals keep only their latest row. Returns how many reservations went."""
    now = now or timezone.now()
    before = now - RESERVATION_KEPT
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT guardrails_release(ARRAY(SELECT id FROM guardrails_allowance ORDER BY id "
            "FOR NO KEY UPDATE), %s)",
            [now],
        )
    deleted, _ = (
        Reservation.objects.filter(released_at__isnull=False)
        .filter(Q(settled_at__lt=before) | Q(expires_at__lt=before))
        .delete()
    )
    with connection.cursor() as cursor:
        # rows below an allowance's latest are read by no one (a total is added only on top of the
        # latest, under the allowance's lock); an allowance deleted leaves rows no one reads either
        cursor.execute(
            "DELETE FROM guardrails_reservedtotal AS t USING ("
            "  SELECT allowance_id, max(seq) AS latest FROM guardrails_reservedtotal GROUP BY allowance_id"
            ") AS last "
            "WHERE t.allowance_id = last.allowance_id AND (t.seq < last.latest OR NOT EXISTS ("
            "  SELECT 1 FROM guardrails_allowance AS a WHERE a.id = t.allowance_id))"
        )
    return deleted
