"""The Months page (finops and admin): every bill month with its state, closing and reopening one (a
reason, a confirmation, audited), and the chosen month's chargeback per team and agent with the
unattributed row and the adjustments of earlier closed months, its CSV and FOCUS files. The numbers are
finops.bills.chargeback's, the same reader as GET /api/v1/chargeback."""

from __future__ import annotations

from datetime import UTC, date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard.tables import Column, Table, render_page
from finops.accounts.selectors import principal_manages_billing
from finops.bills.chargeback import ROUNDING, Chargeback, ChargebackRow, chargeback_for_month
from finops.bills.closing import MonthNotEnded, MonthStateConflict, month_close, month_reopen
from finops.bills.months import MonthError, MonthRow, month_of, month_parse, months_listed

KIND_LABELS = {"allocation": "allocated", "unattributed": "unattributed", "adjustment": "adjustment"}


def _require_billing_role(request) -> None:
    if not principal_manages_billing(request.user):
        raise PermissionDenied("Bills are organisation billing data: the admin and finops roles only.")


def months_table(rows: list[MonthRow], chosen: date) -> Table:
    return Table(
        name="months",
        caption="Bill months (UTC calendar months), newest first",
        columns=[
            Column("Month", link=lambda row: f"?month={row.month:%Y-%m}"),
            Column("State"),
            Column("Closed (UTC)", "datetime"),
            Column("Closed by"),
            Column("Last reason"),
        ],
        rows=[
            [
                f"{row.month:%Y-%m}",
                row.state if row.ended or row.state == "closed" else "open (not ended)",
                row.closed_at,
                row.closed_by,
                row.reason,
            ]
            for row in rows
        ],
        sources=rows,
        row_classes=["current" if row.month == chosen else "" for row in rows],
    )


def providers_table(chargeback: Chargeback) -> Table:
    return Table(
        name="providers",
        caption="What each provider's month is charged from, and how much of it reaches a team",
        columns=[
            Column("Provider"),
            Column("Basis"),
            Column("Total", "usd", align="usd"),
            Column("Telemetry cost", "usd", align="usd"),
            Column("Allocated", "usd", align="usd"),
            Column("Unattributed", "usd", align="usd"),
            Column("Unpriced calls", "count"),
            Column("Why this basis"),
        ],
        rows=[
            [
                charge.basis.provider,
                charge.basis.basis,
                charge.basis.total_usd,
                charge.telemetry_usd,
                charge.allocated_usd,
                charge.unattributed_usd,
                charge.unpriced_calls,
                charge.basis.basis_note,
            ]
            for charge in chargeback.providers
        ],
        row_classes=["unpriced" if charge.unpriced_calls else "" for charge in chargeback.providers],
        empty="No provider has a call, a statement or an invoice in this month.",
    )


def chargeback_table(chargeback: Chargeback) -> Table:
    return Table(
        name="chargeback",
        caption="Chargeback per team and agent: allocations, the unattributed remainder, adjustments",
        columns=[
            Column("Kind"),
            Column("Provider"),
            Column("Team"),
            Column("Agent"),
            Column("Basis"),
            Column("Telemetry cost", "usd", align="usd"),
            Column("Share of telemetry", "percent"),
            Column("Amount", "usd", align="usd"),
            Column("Adjusts"),
            Column("Reason"),
            Column("Unpriced calls", "count"),
        ],
        rows=[
            [
                KIND_LABELS[row.kind],
                row.provider,
                row.team or "—",
                row.agent or "—",
                row.basis,
                row.telemetry_usd,
                None if row.share is None else float(row.share),
                row.amount_usd,
                f"{row.adjusts_month:%Y-%m}" if row.adjusts_month else None,
                row.reason,
                row.unpriced_calls,
            ]
            for row in chargeback.rows
        ],
        foot=[
            "Total",
            "",
            "",
            "",
            "",
            None,
            None,
            chargeback.total_usd,
            None,
            None,
            chargeback.unpriced_calls,
        ],
        row_classes=[_row_class(row) for row in chargeback.rows],
        empty="Nothing to charge back in this month.",
    )


def _row_class(row: ChargebackRow) -> str:
    # a row with unpriced calls is marked: its share leaves out calls whose cost is unknown
    classes = ["warn-text" if row.kind == "unattributed" else "", "unpriced" if row.unpriced_calls else ""]
    return " ".join(name for name in classes if name)


def teams_table(chargeback: Chargeback) -> Table:
    rows = chargeback.by_team()
    return Table(
        name="teams",
        caption="Showback per team: its allocations and the adjustments charged to it this month",
        columns=[
            Column("Team"),
            Column("Name"),
            Column("Allocated", "usd", align="usd"),
            Column("Adjustments", "usd", align="usd"),
            Column("Total", "usd", align="usd"),
        ],
        rows=[
            [slug, name, allocated, adjusted, allocated + adjusted]
            for slug, name, allocated, adjusted in rows
        ],
        empty="No team has a cost in this month.",
    )


def _chosen_month(request, rows: list[MonthRow]) -> date:
    """?month=, else the newest month that has ended (the one finops closes next)."""
    text = request.GET.get("month")
    if text:
        try:
            return month_parse(text)
        except MonthError:
            messages.error(request, f"month must be YYYY-MM, e.g. 2026-11; got {text!r}")
    ended = [row.month for row in rows if row.ended]
    return ended[0] if ended else month_of(timezone.now().astimezone(UTC))


def _change(request):
    """The close or reopen form: confirmed, with a reason (required to reopen); back to the month."""
    action = request.POST.get("action")
    text = request.POST.get("month", "")
    reason = (request.POST.get("reason") or "").strip()
    try:
        month = month_parse(text)
    except MonthError as error:
        messages.error(request, str(error))
        return redirect("dashboard:months")
    back = f"{reverse('dashboard:months')}?month={month:%Y-%m}"
    if action not in ("close", "reopen"):
        messages.error(request, "choose close or reopen")
    elif not request.POST.get("confirm"):
        messages.error(request, f"Tick “I confirm” to {action} {month:%Y-%m}.")
    elif action == "reopen" and not reason:
        messages.error(request, "Say why the month is reopened: the reason is kept in the audit log.")
    else:
        try:
            if action == "close":
                change = month_close(principal=request.user, month=month, reason=reason)
                messages.success(
                    request,
                    f"Closed {month:%Y-%m}: {change.snapshot_rows} daily rollups kept as they are now; "
                    "calls of it that arrive later show as adjustments in the next open month.",
                )
            else:
                month_reopen(principal=request.user, month=month, reason=reason)
                messages.success(request, f"Reopened {month:%Y-%m}: its figures are live again.")
        except (MonthNotEnded, MonthStateConflict) as error:
            messages.error(request, str(error))
    return redirect(back)


@login_required
@require_http_methods(["GET", "POST"])
def months_page(request):
    _require_billing_role(request)
    if request.method == "POST":
        return _change(request)
    rows = months_listed()
    month = _chosen_month(request, rows)
    chosen = next((row for row in rows if row.month == month), None)
    chargeback = chargeback_for_month(month=month)
    api = f"{reverse('api:chargeback')}?month={month:%Y-%m}"
    context = {
        "month": month,
        "month_label": f"{month:%Y-%m}",
        "chosen": chosen,
        "ended": chosen.ended if chosen else False,
        "chargeback": chargeback,
        "months": months_table(rows, month),
        "providers": providers_table(chargeback),
        "rows": chargeback_table(chargeback),
        "teams": teams_table(chargeback),
        "csv_url": f"{api}&format=csv",
        "focus_url": f"{api}&format=focus",
        "rounding": ROUNDING,
        "unpriced": chargeback.unpriced_providers(),
    }
    return render_page(request, "dashboard/months.html", context, page="months")
