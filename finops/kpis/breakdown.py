"""Where input tokens go, per agent (the Breakdown page): the categories of the calls' `input_breakdown`
(system, tools, history, retrieval, tool_results, user, and "other" for keys SPEC does not name), the
input tokens of calls that carried none, and output against reasoning tokens. Read from the breakdown
rollup and the daily rollups (per UTC day), never from the calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import F, Sum

from finops.kpis.selectors import Scope, scoped
from finops.ledger.breakdown import CATEGORIES, NOT_BROKEN_DOWN, OTHER, PARTS
from finops.ledger.models import BreakdownRollup, DailyRollup
from finops.ledger.tokens import INPUT_TOKEN_TYPES

BREAKDOWN_CATEGORIES: tuple[str, ...] = (*CATEGORIES, OTHER)


@dataclass
class AgentTokens:
    """One agent's tokens in a window (or a scope's, summed: `team` and `agent` empty)."""

    team: str
    agent: str
    agent_id: int | None
    categories: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BREAKDOWN_CATEGORIES, 0))
    not_broken_down: int = 0  # input tokens of the calls that carried no usable breakdown
    calls_not_broken_down: int = 0
    input_tokens: int = 0  # the four input token types, of every call
    calls: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def broken_down(self) -> int:
        """Input tokens (as counted in usage) of the calls that carried a breakdown."""
        return self.input_tokens - self.not_broken_down

    @property
    def breakdown_tokens(self) -> int:
        """What those calls' breakdowns add up to (a client's own count: may differ from usage)."""
        return sum(self.categories.values())

    @property
    def not_broken_down_share(self) -> float | None:
        return self.not_broken_down / self.input_tokens if self.input_tokens else None

    def category_share(self, category: str) -> float | None:
        """A category's share of the input: of the breakdowns' tokens plus the not-broken-down input."""
        whole = self.breakdown_tokens + self.not_broken_down
        tokens = self.not_broken_down if category == NOT_BROKEN_DOWN else self.categories[category]
        return tokens / whole if whole else None

    @property
    def reasoning_share(self) -> float | None:
        """Reasoning tokens' share of everything generated (output + reasoning)."""
        generated = self.output + self.reasoning
        return self.reasoning / generated if generated else None

    def add(self, other: AgentTokens) -> None:
        for category, tokens in other.categories.items():
            self.categories[category] += tokens
        for name in (
            "not_broken_down",
            "calls_not_broken_down",
            "input_tokens",
            "calls",
            "output",
            "reasoning",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class TokenBreakdown:
    agents: list[AgentTokens]  # most input tokens first
    total: AgentTokens
    category_calls: dict[str, int]  # calls whose breakdown named each category


def token_breakdown(*, scope: Scope, start: date, end: date) -> TokenBreakdown:
    """Per agent in the scope, over the UTC days [start, end): two grouped queries on the rollups."""
    by_agent: dict[int, AgentTokens] = {}

    def agent_row(row: dict) -> AgentTokens:
        if row["agent_id"] not in by_agent:
            by_agent[row["agent_id"]] = AgentTokens(
                team=row["team__slug"], agent=row["agent__name"], agent_id=row["agent_id"]
            )
        return by_agent[row["agent_id"]]

    usage = (
        scoped(DailyRollup.objects.filter(day__gte=start, day__lt=end), scope)
        .values("agent_id", "team__slug", "agent__name")
        .annotate(
            input_tokens=Sum(sum((F(name) for name in INPUT_TOKEN_TYPES[1:]), F(INPUT_TOKEN_TYPES[0]))),
            all_calls=Sum("calls"),
            output_tokens=Sum("output"),
            reasoning_tokens=Sum("reasoning"),
        )
        .order_by()
    )
    for row in usage:
        tokens = agent_row(row)
        tokens.input_tokens, tokens.calls = row["input_tokens"], row["all_calls"]
        tokens.output, tokens.reasoning = row["output_tokens"], row["reasoning_tokens"]
    category_calls = dict.fromkeys(BREAKDOWN_CATEGORIES, 0)
    parts = (
        scoped(BreakdownRollup.objects.filter(day__gte=start, day__lt=end), scope)
        .values("agent_id", "team__slug", "agent__name")
        .annotate(
            **{f"sum_{part}_{what}": Sum(f"{part}_{what}") for part in PARTS for what in ("tokens", "calls")}
        )
        .order_by()
    )
    for row in parts:
        tokens = agent_row(row)
        for category in BREAKDOWN_CATEGORIES:
            tokens.categories[category] = row[f"sum_{category}_tokens"]
            category_calls[category] += row[f"sum_{category}_calls"]
        tokens.not_broken_down = row[f"sum_{NOT_BROKEN_DOWN}_tokens"]
        tokens.calls_not_broken_down = row[f"sum_{NOT_BROKEN_DOWN}_calls"]
    total = AgentTokens(team="", agent="", agent_id=None)
    for tokens in by_agent.values():
        total.add(tokens)
    agents = sorted(by_agent.values(), key=lambda tokens: (-tokens.input_tokens, tokens.team, tokens.agent))
    return TokenBreakdown(agents=agents, total=total, category_calls=category_calls)
