"""The Models page (ml, and everyone who reads spend): the share of calls, tokens and dollars per model
and per tier (flagship / mid / small, from the org-wide mapping finops/modeltiers), with the share of
requests on flagship models against its target (< 20%); the mapping itself, changed here by the
people who may (admin, finops, any team's ml role: the same rule as /api/v1/model-tiers)."""

from __future__ import annotations

import plotly.graph_objects as go
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from dashboard import figures
from dashboard.filtering import page_filters
from dashboard.formatting import percent
from dashboard.tables import Column, Table, render_page
from finops.accounts.selectors import principal_may_edit_model_tiers
from finops.modeltiers.models import UNMAPPED, ModelTier, Tier
from finops.modeltiers.selectors import (
    FLAGSHIP_SHARE_TARGET,
    TIERS,
    ModelUsage,
    UsageTotals,
    model_usage,
    tier_map,
)
from finops.modeltiers.services import model_tier_delete, model_tier_set

TIER_COLOURS = {"flagship": figures.PALETTE[4], "mid": figures.PALETTE[0], "small": figures.PALETTE[2]}
TIER_COLOURS[UNMAPPED] = figures.OTHER_COLOUR
EDITORS = "the admin or finops role, or the ml role in a team"


class ModelTierForm(forms.Form):
    provider = forms.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "letters, digits, dots and dashes")],
        help_text="as your events name it: anthropic, openai, google…",
    )
    model = forms.CharField(
        max_length=128,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$", "a model name, e.g. gpt-4o")],
        help_text="as calls or the price catalog name it; a dated snapshot follows its model",
    )
    tier = forms.ChoiceField(choices=Tier.choices)


def _share(part, whole) -> float | None:
    return float(part / whole) if whole else None


# the measures of a row of usage, and each one's share of the window's
USAGE_COLUMNS = [
    Column("Calls", "count"),
    Column("Share of calls", "percent"),
    Column("Tokens", "count"),
    Column("Share of tokens", "percent"),
    Column("Cost (priced calls)", "usd"),
    Column("Share of cost", "percent"),
    Column("Unpriced calls", "count"),
]


def _usage_cells(totals: UsageTotals, whole: UsageTotals) -> list:
    # no call priced: the cost is unknown ("—"), never $0.00 (SPEC: unknown prices are never zero)
    unknown = totals.calls > 0 and totals.unpriced_calls == totals.calls
    return [
        totals.calls,
        _share(totals.calls, whole.calls),
        totals.tokens,
        _share(totals.tokens, whole.tokens),
        None if unknown else totals.cost_usd,
        None if unknown else _share(totals.cost_usd, whole.cost_usd),
        totals.unpriced_calls,
    ]


def tier_table(usage: ModelUsage) -> Table:
    return Table(
        name="tiers",
        caption="Calls, tokens and priced spend per tier in the window, with each one's share",
        columns=[Column("Tier"), *USAGE_COLUMNS],
        rows=[[tier, *_usage_cells(totals, usage.total)] for tier, totals in usage.tiers.items()],
        foot=["All", *_usage_cells(usage.total, usage.total)],
    )


def model_table(usage: ModelUsage) -> Table:
    return Table(
        name="models",
        caption="Each model's calls, tokens and priced spend in the window, costliest first",
        columns=[Column("Provider"), Column("Model"), Column("Tier"), *USAGE_COLUMNS],
        rows=[
            [row.provider, row.model, row.tier, *_usage_cells(row.totals, usage.total)]
            for row in usage.models
        ],
        row_classes=["warn-text" if row.tier == UNMAPPED else "" for row in usage.models],
    )


def mapping_table(rows: list[ModelTier]) -> Table:
    return Table(
        name="mapping",
        caption="The model-tier mapping (organisation-wide); a model no row names is unmapped",
        columns=[Column("Provider"), Column("Model"), Column("Tier"), Column("Changed (UTC)", "datetime")],
        rows=[[row.provider, row.model, row.tier, row.updated_at] for row in rows],
        empty="No model is mapped: every model shows as unmapped.",
    )


def tier_share_chart(usage: ModelUsage) -> figures.Chart:
    """Calls, tokens and dollars, each as 100%, split by tier."""
    measures = [("calls", "calls"), ("tokens", "tokens"), ("dollars", "cost_usd")]
    figure = go.Figure(
        data=[
            go.Bar(
                name=tier,
                orientation="h",
                y=[label for label, _ in measures],
                x=[(usage.share(tier, measure) or 0) * 100 for _, measure in measures],
                marker_color=TIER_COLOURS[tier],
                hovertemplate=f"{tier}: %{{x:.1f}}% of %{{y}}<extra></extra>",
            )
            for tier in TIERS
        ],
        layout=figures._base_layout(
            barmode="stack",
            height=220,
            legend={"orientation": "h", "y": -0.25, "x": 0, "traceorder": "normal"},
            hovermode="closest",
            showlegend=True,
            margin={"l": 70, "r": 16, "t": 16, "b": 40},
            xaxis={"range": [0, 100], "ticksuffix": "%", "gridcolor": "#e5e7eb"},
            yaxis={"autorange": "reversed"},
        ),
    )
    return figures.Chart(
        chart_id="tier-shares",
        title="Share per tier",
        figure=figures._figure_json(figure),
        table=tier_table(usage),
    )


def flagship_chart(usage: ModelUsage) -> figures.Chart:
    """The share of calls on flagship models per day, against the target line."""
    shares = usage.flagship_share_by_day()
    shape, annotation = figures._target_line(
        FLAGSHIP_SHARE_TARGET * 100, f"target: below {percent(FLAGSHIP_SHARE_TARGET, 0)}"
    )
    figure = go.Figure(
        data=[
            go.Scatter(
                name="flagship share of calls",
                x=[day.isoformat() for day in usage.days],
                y=[None if share is None else share * 100 for share in shares],
                mode="lines+markers",
                connectgaps=False,
                line={"color": TIER_COLOURS["flagship"], "width": 2},
                hovertemplate="%{x}: %{y:.1f}% of calls on flagship models<extra></extra>",
            )
        ],
        layout=figures._base_layout(
            height=260,
            showlegend=False,
            shapes=[shape],
            annotations=[annotation],
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"range": [0, 105], "ticksuffix": "%", "gridcolor": "#e5e7eb"},
        ),
    )
    day_calls = [sum(day) for day in zip(*usage.calls_by_day.values(), strict=True)]
    shown = [position for position, calls in enumerate(day_calls) if calls]
    table = Table(
        name="flagship-by-day",
        caption="Calls per UTC day and the share on flagship models (days with calls)",
        columns=[
            Column("Day (UTC)"),
            Column("Calls", "count"),
            Column("On flagship models", "count"),
            Column("On unmapped models", "count"),
            Column("Flagship share", "percent"),
        ],
        rows=[
            [
                usage.days[position].isoformat(),
                day_calls[position],
                usage.calls_by_day[Tier.FLAGSHIP][position],
                usage.calls_by_day[UNMAPPED][position],
                shares[position],
            ]
            for position in shown
        ],
    )
    return figures.Chart(
        chart_id="flagship-share",
        title="Share of calls on flagship models per day",
        figure=figures._figure_json(figure),
        table=table,
    )


def model_cost_chart(usage: ModelUsage) -> figures.Chart:
    """Priced spend per model, coloured by its tier."""
    rows = usage.models
    figure = go.Figure(
        data=[
            go.Bar(
                orientation="h",
                y=[f"{row.provider}/{row.model}" for row in rows],
                x=[float(row.totals.cost_usd) for row in rows],
                customdata=[row.tier for row in rows],
                marker_color=[TIER_COLOURS[row.tier] for row in rows],
                hovertemplate="%{y} (%{customdata}): $%{x:,.2f}<extra></extra>",
            )
        ],
        layout=figures._base_layout(
            height=max(200, 40 + 26 * len(rows)),
            showlegend=False,
            hovermode="closest",
            margin={"l": 200, "r": 16, "t": 16, "b": 40},
            xaxis={"tickprefix": "$", "gridcolor": "#e5e7eb", "rangemode": "tozero"},
            yaxis={"autorange": "reversed"},
        ),
    )
    return figures.Chart(
        chart_id="model-cost",
        title="Spend per model",
        figure=figures._figure_json(figure),
        table=model_table(usage),
    )


def _may_edit(request) -> bool:
    return principal_may_edit_model_tiers(principal=request.user)


def _mapping_post(request, form: ModelTierForm):
    """Set (or, with `remove`, delete) one row of the mapping; answers a redirect, or None to show the
    form's errors on the page."""
    if not _may_edit(request):
        raise PermissionDenied(f"changing the model-tier mapping needs {EDITORS}")
    if "remove" in request.POST:
        row = get_object_or_404(ModelTier.objects.restrict(request.user, "change"), pk=request.POST["remove"])
        model_tier_delete(principal=request.user, model_tier=row)
        messages.success(request, f"Removed {row.provider}/{row.model}: its calls now show as unmapped.")
        return redirect(request.get_full_path())
    if not form.is_valid():
        return None
    data = form.cleaned_data
    row = model_tier_set(
        principal=request.user, provider=data["provider"], model=data["model"], tier=data["tier"]
    )
    messages.success(request, f"Saved: {row.provider}/{row.model} is {row.tier}.")
    return redirect(request.get_full_path())


@login_required
@require_http_methods(["GET", "POST"])
def models_page(request):
    tier_form = ModelTierForm(
        request.POST if request.method == "POST" and "remove" not in request.POST else None
    )
    if request.method == "POST":
        answer = _mapping_post(request, tier_form)
        if answer is not None:
            return answer
    shared = page_filters(request)
    filters = shared.filters
    usage = model_usage(
        scope=shared.resolved.scope, start=filters.start, end=filters.end_exclusive, tiers=tier_map()
    )
    has_data = bool(usage.total.calls)
    charts = {}
    if has_data:
        charts = {
            "tiers": tier_share_chart(usage),
            "flagship": flagship_chart(usage),
            "models": model_cost_chart(usage),
        }
    flagship_share = usage.flagship_share
    mapping_rows = list(ModelTier.objects.restrict(request.user))
    context = {
        **shared.context(),
        "action": reverse("dashboard:models"),
        "usage": usage,
        "has_data": has_data,
        "charts": charts,
        "flagship_share": flagship_share,
        "flagship_share_upper": usage.flagship_share_if_unmapped_were_flagship,
        "flagship_target": FLAGSHIP_SHARE_TARGET,
        "flagship_on_target": None if flagship_share is None else flagship_share < FLAGSHIP_SHARE_TARGET,
        "unmapped": usage.tiers[UNMAPPED],
        "unmapped_models": [row for row in usage.models if row.tier == UNMAPPED],
        "mapping": mapping_table(mapping_rows),
        "mapping_rows": mapping_rows,
        "may_edit": _may_edit(request),
        "tier_form": tier_form,
    }
    return render_page(request, "dashboard/models.html", context, page="models")
