"""The Prices page (admin and finops): the organisation's price overrides and negotiated discounts, added,
changed and deleted here (each audited, each queueing a re-pricing run: finops/pricing/prices.py), and
the re-pricing runs with one run's before and after per team, model and day."""

from __future__ import annotations

from decimal import Decimal

import plotly.graph_objects as go
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import RegexValidator
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods

from dashboard import figures
from dashboard.alert_forms import errors_onto
from dashboard.tables import Column, Table, render_page
from finops.accounts.selectors import principal_manages_billing
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceRun
from finops.pricing.prices import (
    DISCOUNT_FIELDS,
    OVERRIDE_FIELDS,
    discount_create,
    discount_delete,
    discount_update,
    price_override_create,
    price_override_delete,
    price_override_update,
)
from finops.pricing.selectors import reprice_run_days, reprice_run_deltas, reprice_runs

WHO = "prices and discounts are changed by the admin and finops roles"
NAME = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$", "letters, digits, dots, dashes, colons, slashes")
RATE = {"max_digits": 14, "decimal_places": 6, "min_value": Decimal(0)}


class OverrideForm(forms.Form):
    provider = forms.CharField(max_length=64, validators=[NAME], help_text="as your events name it")
    model = forms.CharField(max_length=128, validators=[NAME], help_text="exact model name as sent in events")
    effective_from = forms.DateTimeField(
        help_text="UTC, e.g. 2026-11-15 12:00; in force until the next price"
    )
    uncached_input_per_mtok = forms.DecimalField(label="Input $/MTok", **RATE)
    cache_read_per_mtok = forms.DecimalField(
        label="Cache read $/MTok", required=False, **RATE, help_text="empty: input rate"
    )
    cache_write_5m_per_mtok = forms.DecimalField(
        label="Cache write 5m $/MTok", required=False, **RATE, help_text="empty: input rate"
    )
    cache_write_1h_per_mtok = forms.DecimalField(
        label="Cache write 1h $/MTok", required=False, **RATE, help_text="empty: input rate"
    )
    output_per_mtok = forms.DecimalField(label="Output $/MTok", **RATE)
    reasoning_per_mtok = forms.DecimalField(
        label="Reasoning $/MTok", required=False, **RATE, help_text="empty: output rate"
    )
    note = forms.CharField(max_length=256, required=False)  # fmt: skip


class DiscountForm(forms.Form):
    provider = forms.CharField(
        max_length=64, required=False, validators=[NAME], help_text="empty: every provider"
    )
    percent = forms.DecimalField(max_digits=6, decimal_places=3, min_value=Decimal(0), max_value=Decimal(100))
    effective_from = forms.DateTimeField(help_text="UTC")
    effective_to = forms.DateTimeField(required=False, help_text="UTC; empty: open-ended")
    note = forms.CharField(max_length=256, required=False)

    def clean(self):
        data = super().clean()
        start, end = data.get("effective_from"), data.get("effective_to")
        if start and end and end <= start:
            self.add_error("effective_to", "must be after effective from (or empty)")
        return data


def _billing_only(request) -> None:
    if not principal_manages_billing(request.user):
        raise PermissionDenied(f"this page is for the admin and finops roles: {WHO}")


def _run_link(request, run: RepriceRun | None, saved: str) -> None:
    if run is None:
        messages.success(request, f"{saved} (nothing changed).")
        return
    messages.success(
        request,
        format_html(
            '{}. The calls it affects are being re-priced: <a href="{}">re-pricing run {}</a>.',
            saved,
            reverse("dashboard:reprice-run", args=[run.pk]),
            run.pk,
        ),
    )


def overrides_table(rows: list[ModelPriceOverride]) -> Table:
    return Table(
        name="overrides",
        caption="Price overrides, USD per million tokens (empty cache rates: the input rate; reasoning: output)",
        columns=[
            Column("#", "count"),
            Column("Provider"),
            Column("Model"),
            Column("From (UTC)", "datetime"),
            Column("Input", "number"),
            Column("Cache read", "number"),
            Column("Cache write 5m", "number"),
            Column("Cache write 1h", "number"),
            Column("Output", "number"),
            Column("Reasoning", "number"),
            Column("Note"),
        ],
        rows=[
            [
                row.pk,
                row.provider,
                row.model,
                row.effective_from,
                row.uncached_input_per_mtok,
                row.cache_read_per_mtok,
                row.cache_write_5m_per_mtok,
                row.cache_write_1h_per_mtok,
                row.output_per_mtok,
                row.reasoning_per_mtok,
                row.note,
            ]
            for row in rows
        ],  # fmt: skip
        empty="No override: every call is priced from the genai-prices catalog.",
    )


def discounts_table(rows: list[NegotiatedDiscount]) -> Table:
    return Table(
        name="discounts",
        caption="Negotiated discounts, taken after the batch discount",
        columns=[
            Column("#", "count"),
            Column("Provider"),
            Column("Percent off", "number"),
            Column("From (UTC)", "datetime"),
            Column("To (UTC)", "datetime"),
            Column("Note"),
        ],
        rows=[
            [
                row.pk,
                row.provider or "every provider",
                row.percent,
                row.effective_from,
                row.effective_to,
                row.note,
            ]
            for row in rows
        ],
        empty="No negotiated discount.",
    )


def runs_table(runs: list[RepriceRun]) -> Table:
    return Table(
        name="runs",
        caption="Re-pricing runs, newest first",
        columns=[
            Column("Run", "count", link=lambda run: reverse("dashboard:reprice-run", args=[run.pk])),
            Column("Requested (UTC)", "datetime"),
            Column("What changed"),
            Column("By"),
            Column("Status"),
            Column("Calls priced again", "count"),
            Column("Calls changed", "count"),
            Column("Months re-priced"),
            Column("Closed months adjusted"),
            Column("Adjustments", "usd_exact"),
            Column("Seconds", "number"),
            Column("Calls/s", "count"),
        ],
        rows=[
            [
                run.pk,
                run.requested_at,
                run.trigger,
                run.requested_by_name,
                run.status,
                run.calls_scanned,
                run.calls_repriced,
                ", ".join(run.months_repriced),
                ", ".join(run.months_adjusted),
                run.adjustments_usd if run.months_adjusted else None,
                None if run.duration_seconds is None else Decimal(f"{run.duration_seconds:.2f}"),
                None if run.calls_per_second is None else round(run.calls_per_second),
            ]
            for run in runs
        ],  # fmt: skip
        sources=runs,
        empty="No re-pricing yet: saving a price or a discount starts one.",
    )


def _initial(item, fields) -> dict:
    return {name: getattr(item, name) for name in fields}


def _save(request, *, kind: str, form, item):
    """Create (item None) or change one override or discount; answers the redirect, or None to show
    the form's errors."""
    if not form.is_valid():
        return None
    data = dict(form.cleaned_data)
    try:
        if kind == "override":
            if item is None:
                item, run = price_override_create(principal=request.user, **data)
            else:
                item, run = price_override_update(principal=request.user, override=item, changes=data)
        else:
            data["provider"] = data["provider"] or ""
            if item is None:
                item, run = discount_create(principal=request.user, **data)
            else:
                item, run = discount_update(principal=request.user, discount=item, changes=data)
    except ValidationError as error:
        errors_onto(form, error)
        return None
    _run_link(request, run, f"Saved {item}")
    return redirect("dashboard:prices")


@login_required
@require_http_methods(["GET", "POST"])
def prices_page(request):
    _billing_only(request)
    user = request.user
    overrides = ModelPriceOverride.objects.restrict(user, "change")
    discounts = NegotiatedDiscount.objects.restrict(user, "change")
    edit_override = edit_discount = None
    if request.GET.get("override"):
        edit_override = get_object_or_404(overrides, pk=request.GET["override"])
    if request.GET.get("discount"):
        edit_discount = get_object_or_404(discounts, pk=request.GET["discount"])
    action = request.POST.get("action", "")
    override_form = OverrideForm(
        request.POST if action == "override" else None,
        initial=_initial(edit_override, OVERRIDE_FIELDS) if edit_override else None,
        prefix="override",
    )
    discount_form = DiscountForm(
        request.POST if action == "discount" else None,
        initial=_initial(edit_discount, DISCOUNT_FIELDS) if edit_discount else None,
        prefix="discount",
    )
    if request.method == "POST":
        if action == "remove-override":
            item = get_object_or_404(overrides, pk=request.POST.get("id"))
            _run_link(request, price_override_delete(principal=user, override=item), f"Deleted {item}")
            return redirect("dashboard:prices")
        if action == "remove-discount":
            item = get_object_or_404(discounts, pk=request.POST.get("id"))
            _run_link(request, discount_delete(principal=user, discount=item), f"Deleted {item}")
            return redirect("dashboard:prices")
        if action == "override":
            answer = _save(request, kind="override", form=override_form, item=edit_override)
        elif action == "discount":
            answer = _save(request, kind="discount", form=discount_form, item=edit_discount)
        else:
            answer = None
            messages.error(request, "Nothing to do: the form named no action.")
        if answer is not None:
            return answer
    override_rows = list(overrides.select_related("created_by"))
    discount_rows = list(discounts.select_related("created_by"))
    runs = reprice_runs(principal=user, limit=10)
    return render_page(
        request,
        "dashboard/prices.html",
        {
            "overrides": overrides_table(override_rows),
            "override_rows": override_rows,
            "discounts": discounts_table(discount_rows),
            "discount_rows": discount_rows,
            "runs": runs_table(runs),
            "override_form": override_form,
            "discount_form": discount_form,
            "edit_override": edit_override,
            "edit_discount": edit_discount,
        },
        page="prices",
    )


@login_required
@require_GET
def reprice_runs_page(request):
    _billing_only(request)
    return render_page(
        request,
        "dashboard/reprice_runs.html",
        {"runs": runs_table(reprice_runs(principal=request.user, limit=200))},
        page="reprice-runs",
    )


def before_after_chart(run: RepriceRun, deltas) -> figures.Chart:
    """Cost before and after the run per UTC day, over the calls it changed (closed months' days
    hatched: their difference is an adjustment, the calls kept their cost)."""
    days = reprice_run_days(deltas=deltas)
    labels = [day.day.isoformat() for day in days]
    pattern = {"shape": ["/" if day.adjusted else "" for day in days]}
    figure = go.Figure(
        data=[
            go.Bar(
                name="before",
                x=labels,
                y=[float(day.before_usd) for day in days],
                marker={"color": figures.PALETTE[8], "pattern": pattern},
                hovertemplate="%{x}: $%{y:,.6f} before<extra></extra>",
            ),
            go.Bar(
                name="after",
                x=labels,
                y=[float(day.after_usd) for day in days],
                marker={"color": figures.PALETTE[0], "pattern": pattern},
                hovertemplate="%{x}: $%{y:,.6f} after<extra></extra>",
            ),
        ],
        layout=figures._base_layout(
            barmode="group",
            height=300,
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"tickprefix": "$", "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        ),
    )
    table = Table(
        name="days",
        caption=f"Run {run.pk}: cost of the calls it changed, per UTC day, before and after",
        columns=[
            Column("Day (UTC)", "day"),
            Column("Before", "usd_exact"),
            Column("After", "usd_exact"),
            Column("Difference", "usd_exact"),
            Column("Calls", "count"),
            Column("Closed month (adjusted)"),
        ],
        rows=[
            [
                day.day,
                day.before_usd,
                day.after_usd,
                day.difference_usd,
                day.calls,
                "yes" if day.adjusted else "no",
            ]
            for day in days
        ],
        foot=[
            "Total",
            sum((day.before_usd for day in days), Decimal(0)),
            sum((day.after_usd for day in days), Decimal(0)),
            sum((day.difference_usd for day in days), Decimal(0)),
            sum(day.calls for day in days),
            "",
        ],
    )
    return figures.Chart(
        chart_id="before-after",
        title="Before and after, per day",
        figure=figures._figure_json(figure),
        table=table,
    )


def deltas_table(run: RepriceRun, deltas) -> Table:
    return Table(
        name="deltas",
        caption=f"Run {run.pk}: before and after per team, model and UTC day (the calls whose cost changed)",
        columns=[
            Column("Day (UTC)", "day"),
            Column("Team"),
            Column("Provider"),
            Column("Model"),
            Column("Before", "usd_exact"),
            Column("After", "usd_exact"),
            Column("Difference", "usd_exact"),
            Column("Calls", "count"),
            Column("Closed month (adjusted)"),
        ],
        rows=[
            [
                delta.day,
                delta.team.slug,
                delta.provider,
                delta.model,
                delta.before_usd,
                delta.after_usd,
                delta.after_usd - delta.before_usd,
                delta.calls,
                "yes" if delta.adjusted else "no",
            ]
            for delta in deltas
        ],  # fmt: skip
        empty="This run changed no call's cost.",
    )


@login_required
@require_GET
def reprice_run_page(request, run_id: int):
    _billing_only(request)
    run = get_object_or_404(RepriceRun.objects.restrict(request.user, "view"), pk=run_id)
    deltas = reprice_run_deltas(run=run)
    chart = before_after_chart(run, deltas) if deltas else None
    return render_page(
        request,
        "dashboard/reprice_run.html",
        {"run": run, "chart": chart, "deltas": deltas_table(run, deltas), "has_data": bool(deltas)},
        page=f"reprice-run-{run.pk}",
    )
