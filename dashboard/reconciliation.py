"""The Reconciliation page: a provider's UTC month, finops' telemetry against the provider's statement and
invoice (SPEC.md, "Bills"). Totals, a waterfall from telemetry through each cause of difference to the
statement and the invoice, both sides per day, and every line with its status, cause and finops' note,
which the finops and admin roles edit here (audited). The numbers are finops.bills.reconcile's, the
same reader as GET /api/v1/reconciliation. Organisation billing data: the admin and finops roles only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import plotly.graph_objects as go
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard.figures import PALETTE, Chart, _base_layout, _figure_json
from dashboard.formatting import usd
from dashboard.tables import Column, Table, render_page
from finops.accounts.selectors import principal_manages_billing
from finops.bills.models import ReconciliationLine
from finops.bills.months import MonthError, month_next, month_of, month_parse
from finops.bills.reconcile import (
    CAUSES,
    Line,
    LineStatus,
    Reconciliation,
    reconciliation,
    reconciliation_providers,
)
from finops.bills.services import reconciliation_line_annotate

TELEMETRY_COLOUR, STATEMENT_COLOUR = PALETTE[0], PALETTE[1]
UP_COLOUR, DOWN_COLOUR, TOTAL_COLOUR = "#dc2626", "#16a34a", "#6b7280"
STATUS_LABELS = {
    LineStatus.MATCHED: "matched",
    LineStatus.OVER: "over (telemetry above)",
    LineStatus.UNDER: "under (telemetry below)",
    LineStatus.ONLY_IN_STATEMENT: "only in statement",
    LineStatus.ONLY_IN_TELEMETRY: "only in telemetry",
}
BASIS_LABELS = {
    "cost": "the provider's cost report",
    "usage_priced": "the provider's usage report, priced at finops' rates",
    "none": "no statement for this month",
}


NOTES_SHOWN = 50  # note forms on the page, largest difference first; the API annotates any line


def month_previous(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


class LineNoteForm(forms.Form):
    line = forms.IntegerField(widget=forms.HiddenInput)
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    explained = forms.BooleanField(required=False)


def _require_billing_role(request) -> None:
    if not principal_manages_billing(request.user):
        raise PermissionDenied(
            "Reconciliation is organisation billing data: the admin and finops roles only."
        )


# --- the waterfall ----------------------------------------------------------------------------------------


def waterfall_steps(result: Reconciliation) -> list[tuple[str, str, Decimal]]:
    """(label, "absolute" | "relative" | "total", dollars): telemetry, each cause's net difference, the
    lines without a cause, those within the tolerance, what the statement has no price for, the
    statement; then the invoice's difference and the invoice. The relative steps add up exactly."""
    steps: list[tuple[str, str, Decimal]] = [("Telemetry", "absolute", result.telemetry_usd)]
    if result.statement_usd is None:
        return steps
    by_cause: dict[str, Decimal] = defaultdict(Decimal)
    unpriced = Decimal(0)
    for line in result.lines:
        if line.variance_usd is None:
            unpriced -= line.telemetry_usd  # in telemetry, not in the statement's known dollars
        elif line.status == LineStatus.MATCHED:
            by_cause["within the tolerance"] += line.variance_usd
        else:
            by_cause[CAUSES[line.cause] if line.cause else "no cause found"] += line.variance_usd
    for label, amount in sorted(by_cause.items(), key=lambda item: -abs(item[1])):
        if amount:
            steps.append((label, "relative", amount))
    if unpriced:
        steps.append(("not priced on the statement", "relative", unpriced))
    steps.append(("Statement", "total", result.statement_usd))
    if result.invoice_usd is not None:
        steps.append(("invoice − statement", "relative", result.invoice_usd - result.statement_usd))
        steps.append(("Invoice", "total", result.invoice_usd))
    return steps


def waterfall_range(steps: list[tuple[str, str, Decimal]]) -> list[float] | None:
    """The y-axis range that shows the steps: a variance of $1.40 on a $1,797 bill is a bar under a pixel
    tall on an axis from $0, so the axis spans the levels the bars start and end at (with a margin),
    never below $0. None (Plotly's own range) when there is no step to show."""
    level, levels = Decimal(0), []
    for _, measure, amount in steps:
        if measure == "relative":
            levels.append(level)
            level += amount
        else:
            level = amount
        levels.append(level)
    low, high = min(levels), max(levels)
    if len(steps) < 2 or high == low:
        return None
    margin = max((high - low) * Decimal("0.25"), Decimal("0.01"))
    return [float(max(low - margin, Decimal(0))), float(high + margin)]


def waterfall_chart(result: Reconciliation) -> Chart:
    steps = waterfall_steps(result)
    y_range = waterfall_range(steps)
    figure = go.Figure(
        data=[
            go.Waterfall(
                x=[label for label, _, _ in steps],
                y=[float(amount) for _, _, amount in steps],
                measure=[measure for _, measure, _ in steps],
                increasing={"marker": {"color": UP_COLOUR}},
                decreasing={"marker": {"color": DOWN_COLOUR}},
                totals={"marker": {"color": TOTAL_COLOUR}},
                connector={"line": {"color": "#9ca3af"}},
                hovertemplate="%{x}: $%{y:,.2f}<extra></extra>",
            )
        ],
        layout=_base_layout(
            height=340,
            hovermode="closest",
            showlegend=False,
            yaxis={"gridcolor": "#e5e7eb", "tickprefix": "$"} | ({"range": y_range} if y_range else {}),
        ),
    )
    table = Table(
        name="waterfall",
        caption="From telemetry to the statement and the invoice: each step in dollars",
        columns=[Column("Step"), Column("Kind"), Column("Dollars", "usd_exact")],
        rows=[[label, measure, amount] for label, measure, amount in steps],
        empty="No telemetry and no statement in this month.",
    )
    return Chart("waterfall", "From telemetry to the invoice", _figure_json(figure), table)


# --- per day ----------------------------------------------------------------------------------------------


def daily_chart(result: Reconciliation) -> Chart:
    telemetry: dict[date, Decimal] = defaultdict(Decimal)
    statement: dict[date, Decimal] = defaultdict(Decimal)
    for line in result.lines:
        telemetry[line.day] += line.telemetry_usd
        if line.statement_usd is not None:
            statement[line.day] += line.statement_usd
    days = sorted(set(telemetry) | set(statement))
    figure = go.Figure(
        data=[
            go.Bar(
                name="telemetry",
                x=[day.isoformat() for day in days],
                y=[float(telemetry[day]) for day in days],
                marker_color=TELEMETRY_COLOUR,
                hovertemplate="%{x}: $%{y:,.2f} telemetry<extra></extra>",
            ),
            go.Bar(
                name="statement",
                x=[day.isoformat() for day in days],
                y=[float(statement[day]) for day in days],
                marker_color=STATEMENT_COLOUR,
                hovertemplate="%{x}: $%{y:,.2f} statement<extra></extra>",
            ),
        ],
        layout=_base_layout(barmode="group", height=300, yaxis={"gridcolor": "#e5e7eb", "tickprefix": "$"}),
    )
    table = Table(
        name="days",
        caption="Telemetry and statement dollars per UTC day",
        columns=[
            Column("Day", "day"),
            Column("Telemetry", "usd", align="day"),
            Column("Statement", "usd", align="day"),
            Column("Variance", "usd", align="day"),
        ],
        rows=[[day, telemetry[day], statement[day], statement[day] - telemetry[day]] for day in days],
        empty="No telemetry and no statement in this month.",
    )
    return Chart("days", "Telemetry and statement per day", _figure_json(figure), table)


# --- the lines --------------------------------------------------------------------------------------------


def _what(line: Line) -> str:
    return line.token_type or line.line_item


def _largest_first(lines: list[Line]) -> list[Line]:
    """The unmatched lines, largest difference first (unknown dollars last), then the matched by day."""
    unmatched = [line for line in lines if line.status != LineStatus.MATCHED]
    unmatched.sort(key=lambda line: (line.variance_usd is None, -abs(line.variance_usd or 0), line.key))
    return unmatched + [line for line in lines if line.status == LineStatus.MATCHED]


def lines_table(result: Reconciliation) -> Table:
    rows, classes = [], []
    for line in _largest_first(result.lines):
        rows.append(
            [
                line.day,
                line.model or "—",
                _what(line),
                line.telemetry_tokens,
                line.statement_tokens,
                line.telemetry_usd,
                line.statement_usd,
                line.variance_usd,
                line.telemetry_rate,
                line.statement_rate,
                STATUS_LABELS[line.status],
                CAUSES.get(line.cause, "") if line.cause else "",
                line.note_of_cause,
                line.note,
                "yes" if line.explained else "",
                line.id,
            ]
        )
        classes.append("" if line.status == LineStatus.MATCHED else "over")
    return Table(
        name="lines",
        caption="Every line: day × model × token type (or a statement item that is not tokens), the "
        "unmatched first, largest difference first",
        columns=[
            Column("Day", "day"),
            Column("Model"),
            Column("Token type / item"),
            Column("Telemetry tokens", "count"),
            Column("Statement tokens", "count"),
            Column("Telemetry $", "usd_exact"),
            Column("Statement $", "usd_exact"),
            Column("Variance $", "usd_exact"),
            Column("Telemetry $/MTok", "usd_exact"),
            Column("Statement $/MTok", "usd_exact"),
            Column("Status"),
            Column("Likely cause"),
            Column("What shows it"),
            Column("Note"),
            Column("Explained"),
            Column("Line id", "count"),
        ],
        rows=rows,
        row_classes=classes,
        empty="No telemetry and no statement line in this month.",
    )


def _line_choice(line: Line) -> str:
    cause = f" — {line.cause.replace('_', ' ')}" if line.cause else ""
    return (
        f"{line.day} {line.model} {_what(line)}: {STATUS_LABELS[line.status]} {usd(line.variance_usd)}{cause}"
    )


@login_required
@require_http_methods(["GET", "POST"])
def reconciliation_page(request):
    _require_billing_role(request)
    current = month_of(timezone.now())
    # a bill month is reconciled once it has ended (the invoice comes after): last month by default
    month, month_error = month_previous(current), None
    month_text = (request.GET.get("month") or "").strip()
    if month_text:
        try:
            month = month_parse(month_text)
        except MonthError as error:
            month_error = str(error)
    providers = reconciliation_providers(month=month)
    provider = (request.GET.get("provider") or "").strip().lower() or (
        "anthropic" if "anthropic" in providers else (providers[0] if providers else "")
    )
    if request.method == "POST":
        form = LineNoteForm(request.POST)
        if form.is_valid():
            line = get_object_or_404(
                ReconciliationLine.objects.restrict(request.user, "change"), pk=form.cleaned_data["line"]
            )
            reconciliation_line_annotate(
                principal=request.user,
                line=line,
                changes={"note": form.cleaned_data["note"], "explained": form.cleaned_data["explained"]},
            )
            messages.success(request, f"Line {line.pk} ({line.day} {line.model}): note saved.")
            return redirect(f"{request.path}?provider={line.provider}&month={line.month:%Y-%m}#notes")
        messages.error(
            request,
            "The note was not saved: "
            + "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()),
        )
    result = reconciliation(provider=provider, month=month) if provider else None
    unmatched = (
        [line for line in _largest_first(result.lines) if line.status != LineStatus.MATCHED] if result else []
    )
    context = {
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "month_error": month_error,
        "current_month_value": f"{current:%Y-%m}",
        "previous_month_value": f"{month_previous(month):%Y-%m}",
        "next_month_value": f"{month_next(month):%Y-%m}" if month < current else None,
        "notes_shown": NOTES_SHOWN,
        "provider": provider,
        "providers": sorted(set(providers) | ({provider} if provider else set())),
        "result": result,
        "basis": BASIS_LABELS[result.statement_basis] if result else "",
        "has_lines": bool(result and result.lines),
        "waterfall": waterfall_chart(result) if result and result.lines else None,
        "days": daily_chart(result) if result and result.lines else None,
        "table": lines_table(result) if result else None,
        "notes": [(line, _line_choice(line)) for line in unmatched[:NOTES_SHOWN]],
        "notes_more": max(0, len(unmatched) - NOTES_SHOWN),
    }
    return render_page(request, "dashboard/reconciliation.html", context, page="reconciliation")
