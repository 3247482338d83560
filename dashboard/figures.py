"""Plotly figures for the dashboards, built in Python and drawn by the app's own plotly.min.js.

Each chart comes with the table a person can read instead (screen readers, print, copy-paste), built
from the same series so the two never disagree: a dashboard.tables.Table of raw values, so it also
downloads as CSV with the page's ?export=<chart id>. Money becomes float only inside the figure; the
table formats the exact Decimal (one precision per column group, so digits line up).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from decimal import Decimal

import plotly.graph_objects as go

from dashboard.formatting import percent, usd
from dashboard.tables import Column, Table
from finops.kpis.agents import AgentReport
from finops.kpis.series import DailyUsage, SpendSeries
from finops.kpis.trace import TaskTrace
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES

STACK_LIMIT = 8  # more bars than this in one stack cannot be told apart; the rest become "other"
PALETTE = (
    "#2563eb",
    "#f97316",
    "#16a34a",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#6b7280",
)
TOKEN_TYPE_LABELS = {
    "uncached_input": "uncached input",
    "cache_read": "cache read",
    "cache_write_5m": "cache write 5m",
    "cache_write_1h": "cache write 1h",
    "output": "output",
    "reasoning": "reasoning",
}
TOKEN_TYPE_COLOURS = dict(zip(TOKEN_TYPES, PALETTE, strict=False))
TARGET_COLOUR = "#b91c1c"
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#1f2937"}


@dataclass(frozen=True)
class Chart:
    """A figure (Plotly JSON: data, layout, config) and the same numbers as a table (named chart_id):
    drawn with its table folded under it by dashboard/_chart.html, beside it by _table_chart.html, or
    alone by _plot.html when the page shows its numbers in a table of its own (table None)."""

    chart_id: str
    title: str
    figure: dict
    table: Table | None = None

    @property
    def data_id(self) -> str:
        """The id of the <script type="application/json"> holding the figure."""
        return f"{self.chart_id}-data"


def _figure_json(figure: go.Figure, *, config: dict | None = None) -> dict:
    # to_json turns numpy and dates into plain JSON; json_script in the template escapes it for HTML
    as_json = json.loads(figure.to_json())
    # plotly.py's default template is ~8 kB per figure and only restates plotly.js's own defaults
    as_json["layout"].pop("template", None)
    return {
        "data": as_json["data"],
        "layout": as_json["layout"],
        "config": {"displaylogo": False, "responsive": True, **(config or {})},
    }


def _base_layout(**overrides) -> dict:
    layout = {
        "font": FONT,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.18, "x": 0},
        "xaxis": {"gridcolor": "#e5e7eb"},
        "yaxis": {"gridcolor": "#e5e7eb", "zerolinecolor": "#d1d5db"},
    }
    layout.update(overrides)
    return layout


def stack_label(label: str, stack_by: str) -> str:
    return TOKEN_TYPE_LABELS.get(label, label) if stack_by == "token_type" else label


def _top_stacks(series: SpendSeries) -> dict[str, list[Decimal]]:
    if len(series.stacks) <= STACK_LIMIT + 1:
        return dict(series.stacks)
    labels = list(series.stacks)
    kept = {label: series.stacks[label] for label in labels[:STACK_LIMIT]}
    rest = labels[STACK_LIMIT:]
    kept[f"other ({len(rest)})"] = [
        sum((series.stacks[label][position] for label in rest), Decimal(0))
        for position in range(len(series.days))
    ]
    return kept


OTHER_COLOUR = PALETTE[-1]  # grey: the "other (N)" stack


def stable_colour(key: int) -> str:
    """The colour of a team or agent by its id: the same on every page and in every window (ids are
    given in order, so up to eight teams made one after another never share one)."""
    return PALETTE[(key - 1) % (len(PALETTE) - 1)]


def _stack_colour(label: str, position: int, *, stack_by: str, colours: dict[str, str]) -> str:
    if stack_by == "token_type":
        return TOKEN_TYPE_COLOURS[label]
    if label in colours:
        return colours[label]
    if label.startswith("other ("):
        return OTHER_COLOUR
    if stack_by == "model":  # no id: the name's checksum, stable across windows
        return PALETTE[zlib.crc32(label.encode()) % (len(PALETTE) - 1)]
    return PALETTE[position % (len(PALETTE) - 1)]


def spend_chart(series: SpendSeries, *, colours: dict[str, str] | None = None) -> Chart:
    """Spend per day, stacked; `colours` maps a stack's label (team slug, "team/agent") to its colour."""
    stacks = _top_stacks(series)
    x_days = [day.isoformat() for day in series.days]
    figure = go.Figure(
        data=[
            go.Bar(
                name=stack_label(label, series.stack_by),
                x=x_days,
                y=[float(amount) for amount in amounts],
                marker_color=_stack_colour(label, position, stack_by=series.stack_by, colours=colours or {}),
                hovertemplate="%{fullData.name}: $%{y:,.4f}<extra></extra>",
            )
            for position, (label, amounts) in enumerate(stacks.items())
        ],
        layout=_base_layout(
            barmode="stack",
            showlegend=True,  # also for one stack: the legend names whose spend it is
            height=340,
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"tickprefix": "$", "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        ),
    )
    labels = [stack_label(label, series.stack_by) for label in stacks]
    day_totals = series.day_totals()
    shown_days = [position for position, total in enumerate(day_totals) if total]
    stack_totals = [sum(amounts, Decimal(0)) for amounts in stacks.values()]
    return Chart(
        chart_id="spend-by-day",
        title="Spend per day",
        figure=_figure_json(figure),
        table=Table(
            name="spend-by-day",
            caption=f"Priced spend per UTC day by {series.stack_by.replace('_', ' ')} (days with spend)",
            columns=[
                Column("Day", "day"),
                *(Column(label, "usd", align="spend") for label in [*labels, "Total"]),
            ],
            rows=[
                [
                    series.days[position],
                    *(amounts[position] for amounts in stacks.values()),
                    day_totals[position],
                ]
                for position in shown_days
            ],
            foot=["Total", *stack_totals, series.total()],
        ),
    )


def _target_line(value: float, text: str) -> tuple[dict, dict]:
    shape = {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": value,
        "y1": value,
        "line": {"color": TARGET_COLOUR, "width": 2, "dash": "dash"},
    }
    annotation = {
        "xref": "paper",
        "x": 1,
        "xanchor": "right",
        "yref": "y",
        "y": value,
        "yanchor": "bottom",
        "text": text,
        "showarrow": False,
        "font": {"color": TARGET_COLOUR, "size": 11},
    }
    return shape, annotation


def cache_hit_chart(usage: list[DailyUsage], *, target: float) -> Chart:
    shape, annotation = _target_line(target * 100, f"target {percent(target, 0)}")
    figure = go.Figure(
        data=[
            go.Scatter(
                name="cache hit rate",
                x=[day.day.isoformat() for day in usage],
                y=[None if day.cache_hit_rate is None else day.cache_hit_rate * 100 for day in usage],
                mode="lines+markers",
                connectgaps=False,
                line={"color": PALETTE[0], "width": 2},
                hovertemplate="cache hit rate: %{y:.1f}%<extra></extra>",
            )
        ],
        layout=_base_layout(
            height=280,
            showlegend=False,
            shapes=[shape],
            annotations=[annotation],
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"range": [0, 105], "ticksuffix": "%", "gridcolor": "#e5e7eb"},
        ),
    )
    return Chart(
        chart_id="cache-hit-by-day",
        title="Cache hit rate per day",
        figure=_figure_json(figure),
        table=Table(
            name="cache-hit-by-day",
            caption="Cache read ÷ total input tokens per UTC day (days with input)",
            columns=[
                Column("Day", "day"),
                Column("Cache read tokens", "count"),
                Column("Total input tokens", "count"),
                Column("Cache hit rate", "percent"),
            ],
            rows=[
                [day.day, day.tokens["cache_read"], day.total_input_tokens, day.cache_hit_rate]
                for day in usage
                if day.total_input_tokens
            ],
        ),
    )


def token_chart(tokens: dict[str, int]) -> Chart:
    all_tokens = sum(tokens.values())
    figure = go.Figure(
        data=[
            go.Bar(
                orientation="h",
                x=[tokens[token_type] for token_type in TOKEN_TYPES],
                y=[TOKEN_TYPE_LABELS[token_type] for token_type in TOKEN_TYPES],
                marker_color=[TOKEN_TYPE_COLOURS[token_type] for token_type in TOKEN_TYPES],
                hovertemplate="%{y}: %{x:,} tokens<extra></extra>",
            )
        ],
        layout=_base_layout(
            height=280,
            showlegend=False,
            hovermode="closest",
            margin={"l": 110, "r": 16, "t": 16, "b": 40},
            xaxis={"gridcolor": "#e5e7eb", "rangemode": "tozero"},
            yaxis={"autorange": "reversed"},
        ),
    )
    return Chart(
        chart_id="tokens-by-type",
        title="Tokens by type",
        figure=_figure_json(figure),
        table=Table(
            name="tokens-by-type",
            caption="Token totals in the window, by the six token types",
            columns=[
                Column("Token type"),
                Column("Billed as"),
                Column("Tokens", "count"),
                Column("Share", "percent"),
            ],
            rows=[
                [
                    TOKEN_TYPE_LABELS[token_type],
                    "input" if token_type in INPUT_TOKEN_TYPES else "output",
                    tokens[token_type],
                    tokens[token_type] / all_tokens if all_tokens else None,
                ]
                for token_type in TOKEN_TYPES
            ],
            foot=["All tokens", "", all_tokens, 1.0 if all_tokens else None],
        ),
    )


def kpi_bullet(
    *,
    chart_id: str,
    value: float | None,
    target: float | None,
    on_target: bool | None,
    axis_max: float,
    value_format: str,
) -> dict | None:
    """A bullet bar: the value against a red target mark. None when there is no value to draw."""
    if value is None:
        return None
    gauge = {
        "shape": "bullet",
        "axis": {"range": [0, max(axis_max, value * 1.1)], "tickformat": value_format},
        "bar": {"color": {True: "#16a34a", False: "#f97316", None: PALETTE[0]}[on_target], "thickness": 0.6},
        "bgcolor": "#f3f4f6",
        "borderwidth": 0,
    }
    if target is not None:
        gauge["threshold"] = {"line": {"color": TARGET_COLOUR, "width": 3}, "thickness": 0.9, "value": target}
    figure = go.Figure(
        data=[go.Indicator(mode="gauge", value=value, gauge=gauge)],
        layout={
            "height": 56,
            "margin": {"l": 8, "r": 16, "t": 4, "b": 22},
            "font": {**FONT, "size": 10},
            "paper_bgcolor": "rgba(0,0,0,0)",
        },
    )
    return _figure_json(figure, config={"displayModeBar": False, "staticPlot": True}) | {
        "data_id": f"{chart_id}-data"
    }


def trace_context_chart(trace: TaskTrace) -> Chart:
    """The quadratic curve of a run that resends its context every step, beside the straight line a
    context kept at the first call's size (compaction) would give."""
    positions = [step.position for step in trace.steps]
    figure = go.Figure(
        data=[
            go.Scatter(
                name="tokens sent so far",
                x=positions,
                y=[step.cumulative_context_tokens for step in trace.steps],
                mode="lines+markers",
                line={"color": PALETTE[0], "width": 2},
                hovertemplate="call %{x}: %{y:,} input tokens so far<extra></extra>",
            ),
            go.Scatter(
                name="with compaction (first call's context each step)",
                x=positions,
                y=[step.compacted_cumulative_tokens for step in trace.steps],
                mode="lines",
                line={"color": PALETTE[2], "width": 2, "dash": "dash"},
                hovertemplate="call %{x}: %{y:,} with compaction<extra></extra>",
            ),
            go.Bar(
                name="context of this call",
                x=positions,
                y=[step.context_tokens for step in trace.steps],
                marker_color="#93c5fd",
                yaxis="y2",
                hovertemplate="call %{x}: %{y:,} input tokens<extra></extra>",
            ),
        ],
        layout=_base_layout(
            height=320,
            showlegend=True,
            xaxis={"title": {"text": "call"}, "gridcolor": "#e5e7eb", "dtick": max(1, len(positions) // 20)},
            yaxis={"title": {"text": "input tokens so far"}, "gridcolor": "#e5e7eb", "rangemode": "tozero"},
            yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "rangemode": "tozero"},
        ),
    )
    return Chart(
        chart_id="trace-context",
        title="Context sent per call and so far",
        figure=_figure_json(figure),
        table=Table(
            name="trace-context",
            caption="Input tokens (all four input types) per call, so far, and so far with compaction",
            columns=[
                Column("Call"),
                Column("Context", "count"),
                Column("So far", "count"),
                Column("With compaction", "count"),
            ],
            rows=[
                [
                    step.position,
                    step.context_tokens,
                    step.cumulative_context_tokens,
                    step.compacted_cumulative_tokens,
                ]
                for step in trace.steps
            ],
        ),
    )


def trace_cost_chart(trace: TaskTrace) -> Chart:
    positions = [step.position for step in trace.steps]
    figure = go.Figure(
        data=[
            go.Bar(
                name="cost of this call",
                x=positions,
                y=[None if step.cost_usd is None else float(step.cost_usd) for step in trace.steps],
                marker_color=PALETTE[1],
                hovertemplate="call %{x}: $%{y:,.4f}<extra></extra>",
            ),
            go.Scatter(
                name="cost so far",
                x=positions,
                y=[float(step.cumulative_cost_usd) for step in trace.steps],
                mode="lines",
                line={"color": PALETTE[4], "width": 2},
                yaxis="y2",
                hovertemplate="call %{x}: $%{y:,.4f} so far<extra></extra>",
            ),
        ],
        layout=_base_layout(
            height=300,
            showlegend=True,
            xaxis={"title": {"text": "call"}, "gridcolor": "#e5e7eb", "dtick": max(1, len(positions) // 20)},
            yaxis={"tickprefix": "$", "gridcolor": "#e5e7eb", "rangemode": "tozero"},
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "tickprefix": "$",
                "showgrid": False,
                "rangemode": "tozero",
            },
        ),
    )
    return Chart(
        chart_id="trace-cost",
        title="Cost per call and so far",
        figure=_figure_json(figure),
        table=Table(
            name="trace-cost",
            caption="Cost per call (— unpriced) and cost so far of the priced calls",
            columns=[
                Column("Call"),
                Column("Cost", "usd", align="cost"),
                Column("So far", "usd", align="cost"),
            ],
            rows=[[step.position, step.cost_usd, step.cumulative_cost_usd] for step in trace.steps],
        ),
    )


def cost_per_success_chart(report: AgentReport, *, slo: Decimal | None) -> Chart:
    """$/successful task per UTC day of the runs' end, against the agent's cost SLO."""
    shapes, annotations = [], []
    if slo is not None:
        shape, annotation = _target_line(float(slo), f"cost SLO {usd(slo)}")
        shapes, annotations = [shape], [annotation]
    figure = go.Figure(
        data=[
            go.Scatter(
                name="$ per successful task",
                x=[day.day.isoformat() for day in report.days],
                y=[
                    None
                    if day.cost_per_successful_task_usd is None
                    else float(day.cost_per_successful_task_usd)
                    for day in report.days
                ],
                mode="lines+markers",
                connectgaps=False,
                line={"color": PALETTE[0], "width": 2},
                hovertemplate="%{x}: $%{y:,.4f} per successful task<extra></extra>",
            )
        ],
        layout=_base_layout(
            height=300,
            showlegend=False,
            shapes=shapes,
            annotations=annotations,
            xaxis={"type": "date", "gridcolor": "#e5e7eb", "tickformat": "%d %b"},
            yaxis={"tickprefix": "$", "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        ),
    )
    return Chart(
        chart_id="cost-per-success",
        title="$ per successful task per day",
        figure=_figure_json(figure),
        table=Table(
            name="cost-per-success",
            caption="Runs ended per UTC day: their cost over the successful ones (— none succeeded)",
            columns=[
                Column("Day", "day"),
                Column("Runs", "count"),
                Column("Successful", "count"),
                Column("Cost", "usd", align="cost"),
                Column("$ per successful task", "usd", align="per-success"),
            ],
            rows=[
                [day.day, day.tasks, day.successful, day.cost_usd, day.cost_per_successful_task_usd]
                for day in report.days
            ],
        ),
    )


def steps_chart(report: AgentReport, *, ideal_steps: int | None) -> Chart:
    """How many calls the agent's runs took, against the ideal run."""
    shapes, annotations = [], []
    if ideal_steps:
        shapes = [
            {
                "type": "line",
                "xref": "x",
                "x0": ideal_steps,
                "x1": ideal_steps,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": TARGET_COLOUR, "width": 2, "dash": "dash"},
            }
        ]
        annotations = [
            {
                "xref": "x",
                "x": ideal_steps,
                "yref": "paper",
                "y": 1,
                "text": f"ideal {ideal_steps}",
                "showarrow": False,
                "xanchor": "left",
                "font": {"color": TARGET_COLOUR, "size": 11},
            }
        ]
    figure = go.Figure(
        data=[
            go.Bar(
                name="runs",
                x=list(report.steps),
                y=list(report.steps.values()),
                marker_color=PALETTE[0],
                hovertemplate="%{x} steps: %{y} runs<extra></extra>",
            )
        ],
        layout=_base_layout(
            height=280,
            showlegend=False,
            shapes=shapes,
            annotations=annotations,
            xaxis={"title": {"text": "steps (calls) per run"}, "gridcolor": "#e5e7eb"},
            yaxis={"title": {"text": "runs"}, "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        ),
    )
    return Chart(
        chart_id="steps-per-run",
        title="Steps per run",
        figure=_figure_json(figure),
        table=Table(
            name="steps-per-run",
            caption="Ended runs by how many calls they made",
            columns=[Column("Steps"), Column("Runs", "count")],
            rows=[[steps, runs] for steps, runs in report.steps.items()],
        ),
    )
