"""Reconciliation against a brute-force reference on random months (as tests/kpis does for the KPIs):
several agents' rollups and statement lines split over workspaces, models under their aliases and dated
names, reasoning beside output, lines on one side only. The reference adds them up per day, model and
token type by hand; every line's tokens, dollars and status, and the totals, must agree."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import pytest

from finops.bills.reconcile import LineStatus, reconciliation
from tests.bills.conftest import MONTH, MonthBuilder, day
from tests.factories import AgentFactory, TeamFactory

# the names each side may use, and the model they mean (the catalog's id)
NAMES = {
    "claude-sonnet-4-5": "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
    "acme-large-2": "acme-large-2",
    "acme-large-2-20251101": "acme-large-2",
}
TOKEN_TYPES = ("uncached_input", "cache_read", "cache_write_5m", "output", "reasoning")
TOLERANCE = Decimal("0.005")


def reference_status(telemetry, statement) -> str:
    if statement is None:
        return LineStatus.ONLY_IN_TELEMETRY
    if telemetry is None:
        return LineStatus.ONLY_IN_STATEMENT
    difference = statement[1] - telemetry[1]
    if abs(difference) <= TOLERANCE * abs(statement[1]):
        return LineStatus.MATCHED
    return LineStatus.UNDER if difference > 0 else LineStatus.OVER


@pytest.mark.parametrize("seed", range(6))
def test_reconciliation_agrees_with_a_reference(db, seed):
    rng = random.Random(seed)
    team = TeamFactory(slug=f"team-{seed}")
    agents = [MonthBuilder(agent=AgentFactory(team=team, name=f"agent-{index}")) for index in range(3)]
    telemetry: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    statement: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for number in range(1, 6):
        for name, model in NAMES.items():
            for token_type in TOKEN_TYPES:
                folded = "output" if token_type == "reasoning" else token_type
                key = (day(number), model, folded)
                if rng.random() < 0.7:
                    for builder in rng.sample(agents, rng.randint(1, 3)):
                        tokens = rng.randint(1, 10**6)
                        usd = Decimal(rng.randint(1, 10**7)) / 10**6
                        builder.telemetry(day(number), name, token_type, tokens, usd)
                        telemetry[key][0] += tokens
                        telemetry[key][1] += usd
                if rng.random() < 0.7 and token_type != "reasoning":
                    for workspace in rng.sample(["wrkspc_a", "wrkspc_b", "wrkspc_c"], rng.randint(1, 2)):
                        tokens = rng.randint(1, 10**6)
                        usd = Decimal(rng.randint(1, 10**7)) / 10**6
                        agents[0].statement(
                            day(number), name, token_type, tokens, usd, workspace_id=workspace
                        )
                        statement[key][0] += tokens
                        statement[key][1] += usd

    result = reconciliation(provider="anthropic", month=MONTH, tolerance=TOLERANCE)

    keys = set(telemetry) | set(statement)
    got = {(line.day, line.model, line.token_type): line for line in result.lines}
    assert set(got) == keys
    for key in keys:
        line, seen, billed = got[key], telemetry.get(key), statement.get(key)
        assert (line.telemetry_tokens, line.telemetry_usd) == (tuple(seen) if seen else (0, 0)), key
        if billed:
            assert (line.statement_tokens, line.statement_usd) == tuple(billed), key
        assert line.status == reference_status(seen, billed), key
    assert result.telemetry_usd == sum((value[1] for value in telemetry.values()), Decimal(0))
    assert result.statement_usd == sum((value[1] for value in statement.values()), Decimal(0))
    unmatched = [
        (statement.get(key, [0, Decimal(0)])[1] - telemetry.get(key, [0, Decimal(0)])[1])
        for key in keys
        if reference_status(telemetry.get(key), statement.get(key)) != LineStatus.MATCHED
    ]
    assert result.unexplained_usd == sum((abs(value) for value in unmatched), Decimal(0))
    assert result.explained_usd == 0
