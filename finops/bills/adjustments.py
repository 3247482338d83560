"""Late events: calls of a closed month that arrived after it closed (SPEC.md, "Bills": kept, and shown as a
post-close adjustment in the next month, never changing a closed figure).

The writer stores a late call as any other, adding it to the live daily rollups; the closed month's
snapshot (ClosedMonthRollup) is left as it was. So what a closed month M still owes is, per (team, agent,
provider, model, day):

    pending = live rollup cost − snapshot cost − late-event adjustments of M already shown in closed months

and it is shown in the first open month after M. `late_adjustments_materialise` recomputes that for every
closed month and replaces M's adjustment rows still shown in open months with it (recompute-and-replace:
running it twice, or from two processes at once, never counts a call twice); rows shown in a closed
month are frozen with that month. It runs on beat every few minutes and whenever a month's chargeback
is read. Re-pricing writes its own adjustments (reason `reprice`); these functions touch only
`late_event` rows.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum

from finops.bills.models import Adjustment, AdjustmentReason, BillMonth, ClosedMonthRollup, MonthState
from finops.bills.months import month_bounds, month_next, months_closed
from finops.ledger.models import DailyRollup

# one materialisation at a time, across processes (a transaction-level advisory lock's key)
MATERIALISE_LOCK = 0x6269_6C6C_6C61_7465  # "billlate"

Key = tuple[int, int | None, str, str, date]  # team, agent, provider, model, day


def first_open_month_after(month: date, closed: set[date]) -> date:
    """Where an adjustment of `month` shows: the first month after it that is not closed (there is one:
    a month that has not ended cannot be closed)."""
    following = month_next(month)
    while following in closed:
        following = month_next(following)
    return following


def _pending(month: date, closed: set[date]) -> dict[Key, Decimal]:
    start, end = month_bounds(month)
    frozen_in = sorted(closed)
    sql = f"""
        SELECT team_id, agent_id, provider, model, day, SUM(usd) AS usd FROM (
            SELECT team_id, agent_id, provider, model, day, cost_usd AS usd
              FROM {DailyRollup._meta.db_table} WHERE day >= %s AND day < %s
            UNION ALL
            SELECT team_id, agent_id, provider, model, day, -cost_usd
              FROM {ClosedMonthRollup._meta.db_table} WHERE month = %s
            UNION ALL
            SELECT team_id, agent_id, provider, model, day, -usd
              FROM {Adjustment._meta.db_table}
             WHERE month = %s AND reason = %s AND shown_in = ANY(%s)
        ) AS parts
        GROUP BY team_id, agent_id, provider, model, day
        HAVING SUM(usd) <> 0
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [start.date(), end.date(), month, month, AdjustmentReason.LATE_EVENT.value, frozen_in]
        )
        return {(team, agent, provider, model, day): usd for team, agent, provider, model, day, usd in cursor}


def _month_materialise(month: date, closed: set[date]) -> int:
    """Replace the month's late-event rows still shown in open months with what it owes now; returns
    how many rows changed (0 when they already say it)."""
    shown_in = first_open_month_after(month, closed)
    pending = _pending(month, closed)
    current = Adjustment.objects.filter(month=month, reason=AdjustmentReason.LATE_EVENT).exclude(
        shown_in__in=closed
    )
    existing = {
        ((row.team_id, row.agent_id, row.provider, row.model, row.day), row.shown_in): row.usd
        for row in current
    }
    wanted = {(key, shown_in): usd for key, usd in pending.items()}
    if existing == wanted:
        return 0
    current.delete()
    Adjustment.objects.bulk_create(
        Adjustment(
            month=month,
            shown_in=shown_in,
            reason=AdjustmentReason.LATE_EVENT,
            team_id=team,
            agent_id=agent,
            provider=provider,
            model=model,
            day=day,
            usd=usd,
            note=f"calls of {month:%Y-%m} that arrived after it closed",
        )
        for (team, agent, provider, model, day), usd in sorted(pending.items(), key=_order)
    )
    return len(existing) + len(wanted)


def _order(item):
    (team, agent, provider, model, day), _ = item
    return (day, team, agent or 0, provider, model)


def _live_totals(month: date) -> tuple[int, Decimal]:
    start, end = month_bounds(month)
    totals = DailyRollup.objects.filter(day__gte=start.date(), day__lt=end.date()).aggregate(
        calls=Sum("calls"), cost=Sum("cost_usd")
    )
    return totals["calls"] or 0, totals["cost"] or Decimal(0)


def late_adjustments_materialise() -> int:
    """Bring every closed month's late-event adjustments up to date. Idempotent; returns the rows
    written or removed (0 when nothing arrived late since the last run).

    A month whose live rollup totals (calls and cost: a late call adds to both) are what they were at the
    last run is skipped after one indexed sum; closing or reopening any month forgets those totals
    (month_states_changed), since where a month's adjustments show may then move."""
    changed = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MATERIALISE_LOCK])
        rows = list(BillMonth.objects.filter(state=MonthState.CLOSED).order_by("month"))
        closed = {row.month for row in rows}
        for row in rows:
            # read before the adjustments: a call arriving in between changes the totals, so the next
            # run works the month out again
            calls, cost = _live_totals(row.month)
            if (row.late_seen_calls, row.late_seen_cost_usd) == (calls, cost):
                continue
            changed += _month_materialise(row.month, closed)
            BillMonth.objects.filter(pk=row.pk).update(late_seen_calls=calls, late_seen_cost_usd=cost)
    return changed


def month_states_changed() -> None:
    """A month closed or reopened: every closed month's adjustments may now show elsewhere (or be
    frozen), so the next materialisation works each of them out again."""
    BillMonth.objects.filter(state=MonthState.CLOSED).update(late_seen_calls=None, late_seen_cost_usd=None)


def late_adjustments_withdraw(*, month: date) -> int:
    """A reopened month's late events are in its own figures again: its late-event rows shown in open
    months go (rows shown in a closed month stay, frozen with it; closing this month again then shows
    their reversal, so every call is charged once)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MATERIALISE_LOCK])
        closed = months_closed()
        deleted, _ = (
            Adjustment.objects.filter(month=month, reason=AdjustmentReason.LATE_EVENT)
            .exclude(shown_in__in=closed)
            .delete()
        )
    return deleted
