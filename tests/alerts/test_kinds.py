"""Each kind of rule on data built to breach it and data built not to, the expected numbers computed
here from the calls and the rule's definition (SPEC.md, "Alerts"; finops/alerts/evaluate.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from finops.alerts.evaluate import CACHE_MIN_CALLS, alerts_evaluate
from finops.alerts.models import Alert, AlertState
from finops.guardrails.services import allowance_create
from finops.ledger.models import Agent, Call, Task
from finops.ledger.services import task_outcomes_record
from tests.alerts.conftest import event, ingest, rule_create, usd
from tests.factories import TeamFactory

pytestmark = pytest.mark.usefixtures("priced")


def window_end(now: datetime) -> datetime:
    """A trailing window ends with the current minute, included."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def spend(*, start: datetime, end: datetime, **scope) -> Decimal:
    """Brute force over the calls."""
    calls = Call.objects.filter(timestamp__gte=start, timestamp__lt=end, **scope)
    return sum((call.cost_usd for call in calls), Decimal(0))


def firing() -> dict[str, Alert]:
    return {alert.subject: alert for alert in Alert.objects.filter(state=AlertState.FIRING)}


@pytest.mark.django_db
def test_threshold_on_spend_over_the_last_hour_per_team():
    now = timezone.now()
    ingest(
        [
            event(1, at=now - timedelta(minutes=5), tokens=400_000),
            event(2, at=now - timedelta(minutes=50), tokens=700_000),
            event(3, at=now - timedelta(minutes=75), tokens=5_000_000),  # before the hour
            event(4, at=now - timedelta(minutes=20), team="search", agent="ranker", tokens=900_000),
        ]
    )
    rule_create(kind="threshold", metric="cost_usd", op="gt", value=Decimal("1.0"), window="1h")

    summary = alerts_evaluate(now=now)

    end = window_end(now)
    expected = spend(start=end - timedelta(hours=1), end=end, team__slug="support")
    assert expected == usd(1_100_000)
    alerts = firing()
    assert set(alerts) == {"team:support"}  # search's $0.90 is under $1
    assert alerts["team:support"].value == expected
    assert alerts["team:support"].threshold == Decimal(1)
    assert [alert.subject for alert in summary.fired] == ["team:support"]


@pytest.mark.django_db
def test_threshold_over_seven_days_reads_whole_days_and_edges_exactly():
    now = timezone.now()
    events = [
        event(n, at=now - timedelta(hours=7 * n + 0.5), tokens=10_000 + n) for n in range(30)
    ]  # to 8.8 days
    ingest(events)
    end = window_end(now)
    expected = spend(start=end - timedelta(days=7), end=end)
    rule_create(
        kind="threshold",
        metric="cost_usd",
        value=expected - Decimal("0.000001"),
        window="7d",
        agent=Agent.objects.get(name="triage"),
    )
    rule_create(
        kind="threshold",
        metric="cost_usd",
        value=expected,
        window="7d",
        team=TeamFactory(slug="support"),
        name="not over",
    )

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"agent:support/triage"}  # exactly the sum: not over it
    assert alerts["agent:support/triage"].value == expected
    assert expected not in (spend(start=end - timedelta(days=8), end=end), Decimal(0))


@pytest.mark.django_db
def test_threshold_on_cache_hit_rate_below_a_target():
    now = timezone.now()
    ingest(
        [
            event(1, at=now - timedelta(hours=2), tokens=3000, cache_read=1000),
            event(2, at=now - timedelta(hours=3), tokens=1000, cache_read=3000),
            event(3, at=now - timedelta(hours=2), agent="refunds", tokens=100, cache_read=900),
        ]
    )
    triage, refunds = Agent.objects.get(name="triage"), Agent.objects.get(name="refunds")
    rule_create(
        kind="threshold", metric="cache_hit_rate", op="lt", value=Decimal("0.75"), window="1d", agent=triage
    )
    rule_create(
        kind="threshold", metric="cache_hit_rate", op="lt", value=Decimal("0.75"), window="1d", agent=refunds
    )

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"agent:support/triage"}  # refunds is at 90%
    assert alerts["agent:support/triage"].value == Decimal(4000) / Decimal(8000)


@pytest.mark.django_db
def test_threshold_on_tokens_and_on_cost_per_successful_task_over_the_month():
    now = timezone.now()
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at = max(month_start, now - timedelta(minutes=30))
    ingest(
        [
            event(1, at=at, tokens=200_000, cache_read=50_000, task_id="run-1"),
            event(2, at=at, tokens=100_000, task_id="run-1"),
            event(3, at=at, tokens=300_000, task_id="run-2"),
        ]
    )
    team, agent = TeamFactory(slug="support"), Agent.objects.get(name="triage")
    task_outcomes_record(
        outcomes=[
            {
                "team": team,
                "agent": agent,
                "task_id": "run-1",
                "status": "success",
                "started_at": at,
                "ended_at": at,
            },
            {
                "team": team,
                "agent": agent,
                "task_id": "run-2",
                "status": "failure",
                "started_at": at,
                "ended_at": at,
            },
        ]
    )
    rule_create(kind="threshold", metric="tokens", value=Decimal(649_999), window="month", team=team)
    rule_create(
        kind="threshold",
        metric="cost_per_successful_task_usd",
        value=Decimal("0.5"),
        window="month",
        agent=agent,
    )
    rule_create(
        kind="threshold", metric="tasks.failed", value=Decimal(1), window="month", team=team, name="no"
    )

    alerts_evaluate(now=now)

    values = {alert.rule.metric: alert.value for alert in firing().values()}
    # every call of the ended tasks over the one success: $0.6 / 1
    assert values == {"tokens": Decimal(650_000), "cost_per_successful_task_usd": usd(600_000)}


@pytest.mark.django_db
@pytest.mark.parametrize("zone_name", ["Asia/Tokyo", "America/New_York"])
def test_the_month_starts_at_midnight_in_the_organisations_time_zone(zone_name):
    now = timezone.now()
    zone = ZoneInfo(zone_name)
    month_start = (
        now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    )
    ingest(
        [
            event(1, at=month_start - timedelta(minutes=30), tokens=1_000_000),  # last month, same UTC day
            event(2, at=month_start + timedelta(minutes=1), tokens=20_000),
            event(3, at=now - timedelta(minutes=1), tokens=3_000),
        ]
    )
    rule_create(kind="threshold", metric="cost_usd", value=Decimal("0.001"), window="month")

    with override_settings(FINOPS_TIME_ZONE=zone_name):
        alerts_evaluate(now=now)

    expected = spend(start=month_start, end=window_end(now))
    assert expected == usd(23_000)
    assert firing()["team:support"].value == expected


@pytest.mark.django_db
def test_forecast_projects_month_to_date_plus_the_last_weeks_daily_average():
    now = timezone.now()
    ingest([event(n, at=now - timedelta(hours=13 * n + 0.2), tokens=100_000 * (n + 1)) for n in range(15)])
    end = window_end(now)
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    days_left = Decimal(int((month_end - end).total_seconds())) / 86_400
    projected = (
        spend(start=month_start, end=end) + spend(start=end - timedelta(days=7), end=end) / 7 * days_left
    )
    rule_create(kind="forecast", value=projected - Decimal("0.01"), team=TeamFactory(slug="support"))
    rule_create(kind="forecast", value=projected + Decimal("0.01"), agent=Agent.objects.get(name="triage"))

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"team:support"}
    assert abs(alerts["team:support"].value - projected) < Decimal("1e-11")


@pytest.mark.django_db
def test_anomaly_against_the_same_hour_of_the_previous_seven_days():
    now = timezone.now()
    past = [
        event(f"past-{k}", at=now - timedelta(days=k, minutes=10), tokens=100_000 * k) for k in range(1, 8)
    ]
    past.append(
        event("too-old", at=now - timedelta(days=8, minutes=10), tokens=9_000_000)
    )  # not in the baseline
    past.append(event("off-hour", at=now - timedelta(days=2, hours=3), tokens=9_000_000))  # another hour
    ingest([*past, event("now", at=now - timedelta(minutes=5), tokens=1_500_000)])
    baseline = sum(usd(100_000 * k) for k in range(1, 8)) / 7  # $0.40
    rule_create(kind="anomaly", window="1h", value=Decimal(3), team=TeamFactory(slug="support"))  # 1.2 < 1.5
    rule_create(
        kind="anomaly", window="1h", value=Decimal(4), agent=Agent.objects.get(name="triage")
    )  # 1.6 > 1.5

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"team:support"}
    assert alerts["team:support"].value == usd(1_500_000)
    assert alerts["team:support"].threshold == 3 * baseline


@pytest.mark.django_db
def test_anomaly_over_a_day_against_the_seven_days_before_and_no_baseline_no_judgement():
    now = timezone.now()
    ingest(
        [event(k, at=now - timedelta(days=k, hours=1), tokens=200_000) for k in range(1, 8)]
        + [event("today", at=now - timedelta(hours=2), tokens=700_000)]
        + [event("new", at=now - timedelta(hours=2), team="search", agent="ranker", tokens=9_000_000)]
    )
    rule_create(kind="anomaly", window="1d", value=Decimal(3))  # every team

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"team:support"}  # search has no baseline
    # the 24 hours before the window hold the call of 1 day and 1 hour ago, so 7 days back: 6 of them
    start = window_end(now) - timedelta(days=1)
    baseline = spend(start=start - timedelta(days=7), end=start, team__slug="support") / 7
    assert alerts["team:support"].value == spend(start=start, end=window_end(now), team__slug="support")
    assert alerts["team:support"].threshold == 3 * baseline


@pytest.mark.django_db
def test_runaway_task_by_cost_and_by_steps_one_alert_per_task():
    now = timezone.now()
    ingest(
        [
            event(f"a{n}", at=now - timedelta(minutes=40 - n), tokens=100_000, task_id="run-a")
            for n in range(30)
        ]
        + [
            event(f"b{n}", at=now - timedelta(minutes=60 - n), tokens=500_000, task_id="run-b")
            for n in range(10)
        ]
        + [
            event(f"c{n}", at=now - timedelta(minutes=30 - n), tokens=900_000, task_id="run-c")
            for n in range(5)
        ]
    )
    # run-b went quiet 51 minutes ago; run-c has its outcome: neither is running
    team = TeamFactory(slug="support")
    task_outcomes_record(
        outcomes=[
            {
                "team": team,
                "agent": Agent.objects.get(name="triage"),
                "task_id": "run-c",
                "status": "success",
                "started_at": now,
                "ended_at": now,
            }
        ]
    )
    by_cost = rule_create(kind="runaway_task", metric="cost_usd", value=Decimal("2.5"), team=team)
    by_steps = rule_create(kind="runaway_task", metric="steps", value=Decimal(29), name="steps")
    rule_create(kind="runaway_task", metric="steps", value=Decimal(30), name="not over")

    alerts_evaluate(now=now)

    alerts = {(alert.rule_id, alert.subject): alert.value for alert in Alert.objects.all()}
    assert alerts == {
        (by_cost.pk, "task:support/run-a"): usd(3_000_000),
        (by_steps.pk, "task:support/run-a"): 30,
    }
    assert Task.objects.get(task_id="run-b").cost_usd == usd(5_000_000)  # past both bounds, but idle


@pytest.mark.django_db
def test_cache_collapse_after_a_new_prompt_version():
    now = timezone.now()
    calls = CACHE_MIN_CALLS
    ingest(
        [
            event(
                f"v1-{n}",
                at=now - timedelta(days=2, minutes=n),
                tokens=100,
                cache_read=900,
                prompt_version="t@1",
            )
            for n in range(calls)
        ]
        + [
            event(
                f"v2-{n}",
                at=now - timedelta(hours=1, minutes=n),
                tokens=600,
                cache_read=400,
                prompt_version="t@2",
            )
            for n in range(calls)
        ]
        + [
            event(
                f"r1-{n}",
                at=now - timedelta(days=3, minutes=n),
                agent="refunds",
                tokens=100,
                cache_read=900,
                prompt_version="r@1",
            )
            for n in range(calls)
        ]
        + [
            event(
                f"r2-{n}",
                at=now - timedelta(hours=2, minutes=n),
                agent="refunds",
                tokens=600,
                cache_read=400,
                prompt_version="r@2",
            )
            for n in range(calls - 1)
        ]
    )
    rule_create(kind="cache_collapse", value=Decimal("0.4"))
    rule_create(kind="cache_collapse", value=Decimal("0.5"), name="not by more than half")

    alerts_evaluate(now=now)

    alerts = {(alert.rule.name, alert.subject): alert.value for alert in firing().values()}
    # 90% → 40%: a drop of 0.5, over 0.4 and not over 0.5; refunds' new version has too few calls
    assert alerts == {("cache_collapse rule", "agent:support/triage"): Decimal("0.5")}


@pytest.mark.django_db
def test_allowance_past_its_warn_at():
    now = timezone.now()
    team = TeamFactory(slug="support")
    ingest([event(1, at=now - timedelta(minutes=1), tokens=850_000)])
    agent = Agent.objects.get(name="triage")
    allowance_create(principal=None, team=team, agent=None, window="day", limit_usd=Decimal(1), warn_at=0.8)
    allowance_create(
        principal=None, team=team, agent=agent, window="month", limit_tokens=2_000_000, warn_at=0.5
    )
    rule_create(kind="allowance", team=team)

    alerts_evaluate(now=now)

    alerts = firing()
    assert set(alerts) == {"team:support"}  # the agent's is at 42.5% of its tokens, under 50%
    assert alerts["team:support"].value == Decimal("0.85")
    assert alerts["team:support"].threshold == Decimal("0.8")
