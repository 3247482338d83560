"""The Token budget breakdown page: where each agent's input tokens go (the categories of the calls'
`input_breakdown`), how much of the input carried no breakdown, and output against reasoning tokens.
Everything is read from the rollups the writer keeps (finops.kpis.breakdown), never from the calls."""

from __future__ import annotations

import plotly.graph_objects as go
from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET

from dashboard.figures import PALETTE, TOKEN_TYPE_COLOURS, Chart, _base_layout, _figure_json
from dashboard.filtering import page_filters
from dashboard.tables import Column, Table, render_page
from finops.kpis.breakdown import BREAKDOWN_CATEGORIES, AgentTokens, TokenBreakdown, token_breakdown
from finops.ledger.breakdown import NOT_BROKEN_DOWN

CATEGORY_LABELS = {
    "system": "system",
    "tools": "tools",
    "history": "history",
    "retrieval": "retrieval",
    "tool_results": "tool results",
    "user": "user",
    "other": "other keys",
    NOT_BROKEN_DOWN: "not broken down",
}
CATEGORY_COLOURS = {
    **dict(zip(BREAKDOWN_CATEGORIES, PALETTE, strict=False)),
    NOT_BROKEN_DOWN: "#d1d5db",  # light grey: tokens nobody said anything about
}
SHOWN = (*BREAKDOWN_CATEGORIES, NOT_BROKEN_DOWN)


def _label(tokens: AgentTokens) -> str:
    return f"{tokens.team}/{tokens.agent}"


def _tokens_of(tokens: AgentTokens, category: str) -> int:
    return tokens.not_broken_down if category == NOT_BROKEN_DOWN else tokens.categories[category]


def _stacked_bars(
    breakdown: TokenBreakdown,
    *,
    chart_id: str,
    title: str,
    stacks: dict[str, tuple[str, list[int]]],
    bottom: int,
) -> Chart:
    """One horizontal bar per agent, stacked: `stacks` maps a stack's label to (colour, a value per agent)."""
    labels = [_label(tokens) for tokens in breakdown.agents]
    figure = go.Figure(
        data=[
            go.Bar(
                orientation="h",
                name=name,
                y=labels,
                x=values,
                marker_color=colour,
                hovertemplate=f"%{{y}} · {name}: %{{x:,}} tokens<extra></extra>",
            )
            for name, (colour, values) in stacks.items()
        ],
        layout=_base_layout(
            barmode="stack",
            height=150 + 28 * len(labels),
            hovermode="closest",
            margin={"l": 160, "r": 16, "t": 16, "b": bottom},
            legend={"orientation": "h", "x": 0, "y": -0.06, "yanchor": "top"},
            xaxis={"gridcolor": "#e5e7eb", "rangemode": "tozero"},
            yaxis={"autorange": "reversed"},
        ),
    )
    return Chart(chart_id, title, _figure_json(figure))


def input_chart(breakdown: TokenBreakdown) -> Chart:
    """Stacked by part of the prompt (the breakdowns' own token counts), then the input not broken down."""
    return _stacked_bars(
        breakdown,
        chart_id="input-breakdown",
        title="Input tokens by part of the prompt",
        stacks={
            CATEGORY_LABELS[category]: (
                CATEGORY_COLOURS[category],
                [_tokens_of(tokens, category) for tokens in breakdown.agents],
            )
            for category in SHOWN
        },
        bottom=100,  # three rows of legend
    )


def output_chart(breakdown: TokenBreakdown) -> Chart:
    return _stacked_bars(
        breakdown,
        chart_id="output-reasoning",
        title="Output and reasoning tokens",
        stacks={
            name: (TOKEN_TYPE_COLOURS[name], [getattr(tokens, name) for tokens in breakdown.agents])
            for name in ("output", "reasoning")
        },
        bottom=60,
    )


def category_table(breakdown: TokenBreakdown) -> Table:
    total = breakdown.total
    calls = {**breakdown.category_calls, NOT_BROKEN_DOWN: total.calls_not_broken_down}
    return Table(
        name="by-category",
        caption="Input tokens by part of the prompt, all agents shown",
        columns=[
            Column("Part of the prompt"),
            Column("Tokens", "count"),
            Column("Share", "percent"),
            Column("Calls naming it", "count"),
        ],
        rows=[
            [
                CATEGORY_LABELS[category],
                _tokens_of(total, category),
                total.category_share(category),
                calls[category],
            ]
            for category in SHOWN
        ],
        foot=[
            "All",
            total.breakdown_tokens + total.not_broken_down,
            1.0 if total.input_tokens else None,
            total.calls,
        ],
        empty="No calls in this window.",
    )


def agent_table(breakdown: TokenBreakdown) -> Table:
    def row(tokens: AgentTokens, team: str, agent: str) -> list:
        return [
            team,
            agent,
            *(tokens.categories[category] for category in BREAKDOWN_CATEGORIES),
            tokens.not_broken_down,
            tokens.input_tokens,
            tokens.not_broken_down_share,
            tokens.output,
            tokens.reasoning,
            tokens.reasoning_share,
        ]

    return Table(
        name="by-agent",
        caption="Tokens per agent: the parts of the prompt, what carried no breakdown, and generated tokens",
        columns=[
            Column("Team"),
            Column("Agent"),
            *(Column(CATEGORY_LABELS[category].capitalize(), "count") for category in BREAKDOWN_CATEGORIES),
            Column("Not broken down", "count"),
            Column("Input tokens (usage)", "count"),
            Column("Input not broken down", "percent"),
            Column("Output", "count"),
            Column("Reasoning", "count"),
            Column("Reasoning share of generated", "percent"),
        ],
        rows=[row(tokens, tokens.team, tokens.agent) for tokens in breakdown.agents],
        foot=row(breakdown.total, "All", ""),
        empty="No calls in this window.",
    )


@login_required
@require_GET
def breakdown_page(request):
    shared = page_filters(request)
    filters = shared.filters
    breakdown = token_breakdown(scope=shared.resolved.scope, start=filters.start, end=filters.end_exclusive)
    has_data = bool(breakdown.total.calls)
    total = breakdown.total
    context = {
        **shared.context(),
        "has_data": has_data,
        "total": total,
        # what the breakdowns say against what usage counted, for the calls that carried one
        "breakdown_gap": total.breakdown_tokens - total.broken_down,
        "breakdown_gap_size": abs(total.breakdown_tokens - total.broken_down),
        "charts": {"input": input_chart(breakdown), "output": output_chart(breakdown)} if has_data else {},
        "tables": {"categories": category_table(breakdown), "agents": agent_table(breakdown)},
    }
    return render_page(request, "dashboard/breakdown.html", context, page="breakdown")
