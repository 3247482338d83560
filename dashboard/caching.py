"""The Caching page: the cache hit rate per day (prompt-version changes marked on the time axis) and
per prompt version, cache writes against reads in tokens and dollars, and the dollars lost to misses
(defined in finops/kpis/caching.py and on the page: an upper bound)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import plotly.graph_objects as go
from django.contrib.auth.decorators import login_required
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard import figures
from dashboard.filtering import page_filters
from dashboard.formatting import percent
from dashboard.tables import Column, Table, render_page
from finops.kpis.caching import CacheReport, cache_report
from finops.kpis.series import kpi_targets

READ_COLOUR, WRITE_COLOUR, UNCACHED_COLOUR = figures.PALETTE[2], figures.PALETTE[1], figures.PALETTE[8]


MARKS_LABELLED = 12  # days with a version change labelled on the chart; past it, the lines alone


def _version_marks(report: CacheReport) -> tuple[list[dict], list[dict]]:
    """A dotted vertical line at each day's first prompt-version change in the window, labelled with
    the version (or how many changed that day, each named on hover). A year of 50 agents can hold 200
    changes: drawn one by one they were unreadable and cost the page most of its time, so changes share
    their day's line, and past MARKS_LABELLED days the lines go unlabelled (the table names every one)."""
    by_day: dict = {}
    for version in sorted(report.changes, key=lambda version: version.introduced_at):
        by_day.setdefault(version.introduced_at.astimezone(UTC).date(), []).append(version)
    labelled = len(by_day) <= MARKS_LABELLED
    shapes, annotations = [], []
    for position, versions in enumerate(by_day.values()):
        moment = versions[0].introduced_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # no offset
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "x0": moment,
                "x1": moment,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": "#6b7280", "width": 1, "dash": "dot"},
            }
        )
        if not labelled:
            continue
        named = [f"{version.agent}: {version.prompt_version}" for version in versions]
        annotations.append(
            {
                "xref": "x",
                "x": moment,
                "yref": "paper",
                "y": 1 - 0.08 * (position % 4),  # staggered, so changes close together stay readable
                "xanchor": "left",
                "text": named[0] if len(named) == 1 else f"{len(named)} prompt versions",
                "hovertext": "<br>".join(named),
                "showarrow": False,
                "font": {"color": "#374151", "size": 10},
            }
        )
    return shapes, annotations


def hit_rate_chart(report: CacheReport, *, target: float) -> figures.Chart:
    target_shape, target_label = figures._target_line(target * 100, f"target {percent(target, 0)}")
    shapes, annotations = _version_marks(report)
    figure = go.Figure(
        data=[
            go.Scatter(
                name="cache hit rate",
                # at noon: the day's point sits in the middle of its day, beside the changes' instants
                x=[f"{day.day.isoformat()}T12:00:00" for day in report.days],
                y=[None if day.cache_hit_rate is None else day.cache_hit_rate * 100 for day in report.days],
                mode="lines+markers",
                connectgaps=False,
                line={"color": figures.PALETTE[0], "width": 2},
                hovertemplate="%{x|%d %b}: %{y:.1f}%<extra></extra>",
            )
        ],
        layout=figures._base_layout(
            height=320,
            showlegend=False,
            shapes=[target_shape, *shapes],
            annotations=[target_label, *annotations],
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"range": [0, 105], "ticksuffix": "%", "gridcolor": "#e5e7eb"},
        ),
    )
    shown = [day for day in report.days if day.input_tokens]
    table = Table(
        name="hit-rate-by-day",
        caption="Cache read ÷ total input tokens per UTC day (days with input)",
        columns=[
            Column("Day (UTC)"),
            Column("Total input tokens", "count"),
            Column("Cache read tokens", "count"),
            Column("Cache hit rate", "percent"),
        ],
        rows=[[day.day.isoformat(), day.input_tokens, day.cache_read, day.cache_hit_rate] for day in shown],
        foot=["Window", report.total.input_tokens, report.total.cache_read, report.total.cache_hit_rate],
    )
    return figures.Chart(
        chart_id="cache-hit-rate",
        title="Cache hit rate per day, prompt-version changes marked",
        figure=figures._figure_json(figure),
        table=table,
    )


def reads_writes_chart(report: CacheReport) -> figures.Chart:
    x_days = [day.day.isoformat() for day in report.days]
    figure = go.Figure(
        data=[
            go.Bar(
                name=name,
                x=x_days,
                y=[getattr(day, attribute) for day in report.days],
                marker_color=colour,
                hovertemplate=f"{name}: %{{y:,}} tokens<extra></extra>",
            )
            for name, attribute, colour in (
                ("cache read", "cache_read", READ_COLOUR),
                ("cache write", "cache_write", WRITE_COLOUR),
                ("uncached input", "uncached_input", UNCACHED_COLOUR),
            )
        ],
        layout=figures._base_layout(
            barmode="stack",
            height=300,
            showlegend=True,
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"gridcolor": "#e5e7eb", "rangemode": "tozero", "title": {"text": "input tokens"}},
        ),
    )
    shown = [day for day in report.days if day.input_tokens]
    total = report.total
    table = Table(
        name="reads-writes-by-day",
        caption="Input tokens and their priced cost per UTC day: read from the cache, written to it (5 m and "
        "1 h), uncached; and the miss cost (days with input)",
        columns=[
            Column("Day (UTC)"),
            Column("Cache read tokens", "count"),
            Column("Cache read cost", "usd"),
            Column("Cache write tokens", "count"),
            Column("Cache write cost", "usd"),
            Column("Uncached input tokens", "count"),
            Column("Uncached input cost", "usd"),
            Column("Miss cost (upper bound)", "usd"),
        ],
        rows=[
            [
                day.day.isoformat(),
                day.cache_read,
                day.cost_cache_read_usd,
                day.cache_write,
                day.cost_cache_write_usd,
                day.uncached_input,
                day.cost_uncached_input_usd,
                day.miss_cost_usd,
            ]
            for day in shown
        ],
        foot=[
            "Window",
            total.cache_read,
            total.cost_cache_read_usd,
            total.cache_write,
            total.cost_cache_write_usd,
            total.uncached_input,
            total.cost_uncached_input_usd,
            total.miss_cost_usd,
        ],
    )
    return figures.Chart(
        chart_id="cache-reads-writes",
        title="Cache reads and writes per day",
        figure=figures._figure_json(figure),
        table=table,
    )


def versions_chart(report: CacheReport, *, target: float) -> figures.Chart:
    versions = report.versions
    labels = [f"{version.team}/{version.agent} {version.prompt_version}" for version in versions]
    shape, annotation = figures._target_line(target * 100, f"target {percent(target, 0)}")
    shape = {**shape, "xref": "x", "x0": target * 100, "x1": target * 100, "yref": "paper", "y0": 0, "y1": 1}
    annotation = {**annotation, "xref": "x", "x": target * 100, "yref": "paper", "y": 1, "xanchor": "left"}
    figure = go.Figure(
        data=[
            go.Bar(
                orientation="h",
                y=labels,
                x=[
                    None if version.cache_hit_rate is None else version.cache_hit_rate * 100
                    for version in versions
                ],
                marker_color=figures.PALETTE[0],
                hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
            )
        ],
        layout=figures._base_layout(
            height=max(200, 50 + 26 * len(versions)),
            showlegend=False,
            hovermode="closest",
            shapes=[shape],
            annotations=[annotation],
            margin={"l": 260, "r": 16, "t": 24, "b": 40},
            xaxis={"range": [0, 105], "ticksuffix": "%", "gridcolor": "#e5e7eb"},
            yaxis={"autorange": "reversed"},
        ),
    )
    table = Table(
        name="prompt-versions",
        caption="Prompt versions called in the window: calls and hit rate over the window's calls, against "
        "the agent's version before it (its hit rate over all of its calls, any date)",
        columns=[
            Column("Team"),
            Column("Agent", link=lambda version: reverse("dashboard:agent", args=[version.agent_id])),
            Column("Prompt version"),
            Column("First call in window (UTC)", "datetime"),
            Column("Last call in window (UTC)", "datetime"),
            Column("Calls", "count"),
            Column("Cache hit rate", "percent"),
            Column("Version before"),
            Column("Its hit rate (all its calls)", "percent"),
            Column("Change (points)", "number"),
        ],
        rows=[
            [
                version.team,
                version.agent,
                version.prompt_version,
                version.first_call_at,
                version.last_call_at,
                version.calls,
                version.cache_hit_rate,
                version.previous,
                version.previous_hit_rate,
                None if version.change is None else Decimal(f"{version.change * 100:.1f}"),
            ]
            for version in versions
        ],
        row_classes=[
            "warn-text" if version.change is not None and version.change < -0.1 else ""
            for version in versions
        ],
        empty="No call in this window carries a prompt_version.",
        sources=versions,
    )
    return figures.Chart(
        chart_id="cache-by-version",
        title="Cache hit rate per prompt version",
        figure=figures._figure_json(figure),
        table=table,
    )


@login_required
@require_GET
def caching_page(request):
    shared = page_filters(request)
    filters = shared.filters
    report = cache_report(scope=shared.resolved.scope, start=filters.start, end=filters.end_exclusive)
    target = kpi_targets(agent=shared.resolved.single_agent).cache_hit_rate
    has_data = bool(report.total.input_tokens)
    charts = {}
    if has_data:
        charts = {
            "hit_rate": hit_rate_chart(report, target=target),
            "reads_writes": reads_writes_chart(report),
            "versions": versions_chart(report, target=target),
        }
    hit_rate = report.total.cache_hit_rate
    context = {
        **shared.context(),
        "action": reverse("dashboard:caching"),
        "report": report,
        "total": report.total,
        "has_data": has_data,
        "charts": charts,
        "target": target,
        "on_target": None if hit_rate is None else hit_rate >= target,
    }
    return render_page(request, "dashboard/caching.html", context, page="caching")
