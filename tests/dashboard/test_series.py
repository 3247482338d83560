"""Time-series selectors: each stack of spend_by_day adds up to the events that were sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from django.http import Http404

from finops.accounts.models import User
from finops.kpis.selectors import Scope, kpis_for_scope
from finops.kpis.series import (
    kpi_targets,
    kpis_on_target,
    scope_for_principal,
    spend_by_day,
    usage_by_day,
)
from finops.ledger.tokens import TOKEN_TYPES
from tests.dashboard.conftest import (
    PROVIDER,
    UNPRICED_MODEL,
    Ledger,
    expected_cost,
    expected_cost_by_type,
)

MARCH_START, APRIL_START = date(2025, 3, 1), date(2025, 4, 1)
EVERY_TEAM = Scope(team_ids=None)


def expected_by_day(ledger: Ledger, stack_label) -> dict[tuple[str, date], Decimal]:
    expected: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for event in ledger.priced():
        day = date.fromisoformat(event["timestamp"][:10])
        if MARCH_START <= day < APRIL_START:
            expected[(stack_label(event), day)] += expected_cost(event["model"], event["usage"])
    return expected


def actual_by_day(series) -> dict[tuple[str, date], Decimal]:
    return {
        (label, day): amount
        for label, amounts in series.stacks.items()
        for day, amount in zip(series.days, amounts, strict=True)
        if amount
    }


@pytest.mark.parametrize(
    ("stack_by", "stack_label"),
    [
        ("team", lambda event: event["team"]),
        ("agent", lambda event: f"{event['team']}/{event['agent']}"),
        ("model", lambda event: f"{PROVIDER}/{event['model']}"),
    ],
)
def test_spend_by_day_matches_the_events_per_stack(ledger, stack_by, stack_label):
    series = spend_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START, stack_by=stack_by)
    assert len(series.days) == 31 and series.days[0] == MARCH_START and series.days[-1] == date(2025, 3, 31)
    assert actual_by_day(series) == dict(expected_by_day(ledger, stack_label))
    assert series.total() == ledger.spend() == Decimal("15.43")


def test_spend_by_token_type_matches_the_events(ledger):
    series = spend_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START, stack_by="token_type")
    assert list(series.stacks) == list(TOKEN_TYPES)  # all six, in a fixed order, even the $0 ones
    expected: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for event in ledger.priced():
        day = date.fromisoformat(event["timestamp"][:10])
        if day < APRIL_START:
            for token_type, amount in expected_cost_by_type(event["model"], event["usage"]).items():
                if amount:
                    expected[(token_type, day)] += amount
    assert actual_by_day(series) == dict(expected)
    assert series.stack_total("cache_write_1h") == 0
    # 3 March: uncached 0.2 + 0.1, cache read 0.18 + 0.19, output 0.1 + 0.2
    third = series.days.index(date(2025, 3, 3))
    assert series.stacks["cache_read"][third] == Decimal("0.37")


def test_spend_by_day_is_scoped(ledger):
    support = Scope(team_ids=frozenset({ledger.teams["support"].pk}))
    series = spend_by_day(scope=support, start=MARCH_START, end=APRIL_START, stack_by="team")
    assert list(series.stacks) == ["support"]
    writer = Scope(team_ids=support.team_ids, agent_ids=frozenset({ledger.agents["writer"].pk}))
    series = spend_by_day(scope=writer, start=MARCH_START, end=APRIL_START, stack_by="model")
    # the unpriced call has no cost to stack: it is counted, not drawn as $0
    assert {label: series.stack_total(label) for label in series.stacks} == {f"{PROVIDER}/m1": Decimal("3.8")}


def test_spend_series_total_agrees_with_the_kpi_reader(ledger):
    from datetime import UTC, datetime

    kpis = kpis_for_scope(
        scope=EVERY_TEAM, start=datetime(2025, 3, 1, tzinfo=UTC), end=datetime(2025, 4, 1, tzinfo=UTC)
    )
    for stack_by in ("team", "agent", "model", "token_type"):
        series = spend_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START, stack_by=stack_by)
        assert series.total() == kpis.cost_usd


def test_spend_by_day_rejects_an_unknown_stack(ledger):
    with pytest.raises(ValueError, match="stack_by"):
        spend_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START, stack_by="colour")


def test_usage_by_day_counts_calls_and_tokens(ledger):
    support = Scope(team_ids=frozenset({ledger.teams["support"].pk}))
    usage = {day.day: day for day in usage_by_day(scope=support, start=MARCH_START, end=APRIL_START)}
    assert len(usage) == 31
    fifth = usage[date(2025, 3, 5)]
    assert (fifth.calls, fifth.unpriced_calls, fifth.calls_not_in_task) == (2, 1, 2)
    assert fifth.tokens["uncached_input"] == 1_010_000 and fifth.tokens["reasoning"] == 30_000
    third = usage[date(2025, 3, 3)]
    assert third.cache_hit_rate == 1_850_000 / 2_000_000
    assert usage[date(2025, 3, 20)].calls == 0 and usage[date(2025, 3, 20)].cache_hit_rate is None
    sent = [event for event in ledger.events if event["team"] == "support"]
    for token_type in TOKEN_TYPES:
        assert sum(day.tokens[token_type] for day in usage.values()) == sum(
            event["usage"].get(token_type, 0) for event in sent
        )
    assert any(event["model"] == UNPRICED_MODEL for event in sent)


def test_series_query_count(ledger, django_assert_num_queries):
    with django_assert_num_queries(1):
        spend_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START, stack_by="agent")
    with django_assert_num_queries(1):
        usage_by_day(scope=EVERY_TEAM, start=MARCH_START, end=APRIL_START)


def test_scope_for_principal_hides_other_teams(ledger, support_member):
    resolved = scope_for_principal(principal=support_member, team_slug=None, agent_name=None)
    assert resolved.scope.team_ids == frozenset({ledger.teams["support"].pk})
    with pytest.raises(Http404):
        scope_for_principal(principal=support_member, team_slug="billing", agent_name=None)
    with pytest.raises(Http404):
        scope_for_principal(principal=support_member, team_slug=None, agent_name="collector")
    with pytest.raises(Http404):
        scope_for_principal(principal=support_member, team_slug="support", agent_name="collector")
    triage = scope_for_principal(principal=support_member, team_slug="support", agent_name="triage")
    assert triage.single_agent == ledger.agents["triage"]


def test_scope_for_principal_sees_every_team_for_finops(ledger, finops_user: User):
    assert scope_for_principal(principal=finops_user, team_slug=None, agent_name=None).scope.team_ids is None


def test_targets_come_from_the_agent_when_one_is_selected(ledger):
    defaults = kpi_targets(agent=None)
    assert (defaults.cache_hit_rate, defaults.token_efficiency_index, defaults.step_inflation_ratio) == (
        0.75,
        0.18,
        1.4,
    )
    assert defaults.cost_per_successful_task_usd is None
    assert kpi_targets(agent=ledger.agents["triage"]).cost_per_successful_task_usd == Decimal("0.5")


def test_kpis_on_target(ledger):
    from datetime import UTC, datetime

    support = Scope(
        team_ids=frozenset({ledger.teams["support"].pk}), agent_ids=frozenset({ledger.agents["triage"].pk})
    )
    kpis = kpis_for_scope(
        scope=support, start=datetime(2025, 3, 1, tzinfo=UTC), end=datetime(2025, 4, 1, tzinfo=UTC)
    )
    status = kpis_on_target(kpis=kpis, targets=kpi_targets(agent=ledger.agents["triage"]))
    # $1.63 per success against a $0.50 SLO; cache 1.85M of 2.6M input; 1.25 steps per ideal step
    assert status == {
        "cost_per_successful_task_usd": False,
        "cache_hit_rate": False,
        "token_efficiency_index": False,
        "step_inflation_ratio": True,
    }
