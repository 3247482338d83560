"""The alert state machine: pending for for_minutes, firing, repeats every repeat_minutes until
acknowledged, resolving; silences hold notifications back but not state; one open alert per rule and
subject, also when two evaluations run at once; notifications as Deliveries handed over after commit,
with SPEC's webhook body. The condition here is a runaway task, set up on the task row itself."""

from __future__ import annotations

import re
import threading
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from finops.alerts import delivery
from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.models import Alert, AlertRule, AlertState, Delivery, Silence
from finops.ledger.models import Agent, Task
from tests.alerts.conftest import rule_create
from tests.factories import AgentFactory, TeamFactory, UserFactory


@pytest.fixture
def runaway(db):
    """A task still running at $5 and 50 steps (its last call now); `.at(moment)` moves that call."""
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="triage")
    now = timezone.now().replace(microsecond=0)
    task = Task.objects.create(
        team=team,
        agent=agent,
        task_id="run-1",
        steps=50,
        cost_usd=Decimal(5),
        first_call_at=now,
        last_call_at=now,
    )
    task.now = now
    return task


def still_running(task: Task, at) -> None:
    Task.objects.filter(pk=task.pk).update(last_call_at=at)


@pytest.fixture
def dispatched(monkeypatch):
    """The delivery ids handed to finops.alerts.delivery, in order."""
    handed: list[list[int]] = []
    monkeypatch.setattr(delivery, "deliveries_dispatch", lambda ids: handed.append(list(ids)))
    return handed


def evaluate(at, capture) -> None:
    with capture(execute=True):
        alerts_evaluate(now=at)


def events() -> list[tuple[str, str]]:
    return [(d.event, d.channel.kind) for d in Delivery.objects.select_related("channel").order_by("id")]


@pytest.mark.django_db
def test_pending_until_the_condition_held_for_minutes_then_firing_and_notified(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), for_minutes=5, channels=channels)
    now = runaway.now

    evaluate(now, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert (alert.state, alert.fired_at, alert.subject) == (AlertState.PENDING, None, "task:support/run-1")
    evaluate(now + timedelta(minutes=4), django_capture_on_commit_callbacks)
    assert Alert.objects.get().state == AlertState.PENDING
    assert events() == [] and dispatched == []

    evaluate(now + timedelta(minutes=5), django_capture_on_commit_callbacks)

    alert = Alert.objects.get()
    assert (alert.state, alert.started_at, alert.fired_at) == (
        AlertState.FIRING,
        now,
        now + timedelta(minutes=5),
    )
    assert events() == [("alert.firing", "webhook"), ("alert.firing", "email")]
    assert dispatched == [list(Delivery.objects.order_by("id").values_list("id", flat=True))]
    assert alert.rule_id == rule.pk


@pytest.mark.django_db
def test_a_pending_alert_whose_condition_stops_is_cleared_without_a_word(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), for_minutes=5, channels=channels)
    evaluate(runaway.now, django_capture_on_commit_callbacks)
    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(10))

    evaluate(runaway.now + timedelta(minutes=1), django_capture_on_commit_callbacks)

    assert not Alert.objects.exists()
    assert events() == []


@pytest.mark.django_db
def test_repeats_every_repeat_minutes_until_acknowledged_and_resolving_notifies(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), repeat_minutes=10, channels=channels[:1])
    now = runaway.now
    for minutes in (0, 9, 10, 15, 20):
        still_running(runaway, now + timedelta(minutes=minutes))
        evaluate(now + timedelta(minutes=minutes), django_capture_on_commit_callbacks)
    assert events() == [("alert.firing", "webhook")] * 3  # at 0, 10 and 20

    Alert.objects.update(acknowledged_by=UserFactory(username="oncall"), acknowledged_at=now)
    for minutes in (30, 40):
        still_running(runaway, now + timedelta(minutes=minutes))
        evaluate(now + timedelta(minutes=minutes), django_capture_on_commit_callbacks)
    assert len(events()) == 3  # acknowledged: no more repeats

    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(10))  # the task is no longer past it
    evaluate(now + timedelta(minutes=41), django_capture_on_commit_callbacks)

    alert = Alert.objects.get()
    assert (alert.state, alert.resolved_at) == (AlertState.RESOLVED, now + timedelta(minutes=41))
    assert events()[-1] == ("alert.resolved", "webhook")
    assert len(dispatched) == 4


@pytest.mark.django_db
@override_settings(FINOPS_BASE_URL="https://finops.example.com/")
def test_the_notification_is_the_webhook_body_of_the_spec(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(
        kind="runaway_task", metric="cost_usd", value=Decimal("1.5"), channels=channels, team=runaway.team
    )
    now = runaway.now
    evaluate(now, django_capture_on_commit_callbacks)
    Alert.objects.update(acknowledged_by=UserFactory(username="oncall"), acknowledged_at=now)
    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(6))

    evaluate(now + timedelta(minutes=2), django_capture_on_commit_callbacks)

    alert = Alert.objects.get()
    resolved = Delivery.objects.filter(event="alert.resolved").order_by("id")
    assert [d.channel_id for d in resolved] == [c.pk for c in channels]
    stamp = lambda moment: moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    assert resolved[0].payload == {
        "type": "alert.resolved",
        "alert": {
            "id": alert.pk,
            "rule": rule.pk,
            "state": "resolved",
            "value": "5.000000000000",
            "threshold": "1.500000000000",
            "started_at": stamp(now),
            "fired_at": stamp(now),
            "resolved_at": stamp(now + timedelta(minutes=2)),
            "acknowledged_by": "oncall",
            "subject": "task:support/run-1",
        },
        "rule": {
            "id": rule.pk,
            "name": "runaway_task rule",
            "team": "support",
            "agent": None,
            "kind": "runaway_task",
            "metric": "cost_usd",
            "op": "gt",
            "value": "6.000000",
            "window": "",
            "for_minutes": 0,
            "repeat_minutes": 240,
            "channels": [c.pk for c in channels],
            "enabled": True,
        },
        "url": f"https://finops.example.com/alerts/{alert.pk}/",
    }
    assert resolved[0].payload == resolved[1].payload and resolved[0].team_id == runaway.team_id
    assert Delivery.objects.filter(event="alert.firing").first().payload["alert"]["state"] == "firing"


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["rule", "team", "agent", "everything"])
def test_a_silence_holds_notifications_back_but_not_state(
    runaway, channels, dispatched, django_capture_on_commit_callbacks, scope
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), channels=channels[:1])
    now = runaway.now
    silence = {
        "rule": {"rule": rule},
        "team": {"team": runaway.team},
        "agent": {"team": runaway.team, "agent": runaway.agent},
        "everything": {},
    }[scope]
    Silence.objects.create(
        starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(minutes=10), **silence
    )
    # a silence of another agent of the team covers nothing here
    Silence.objects.create(
        team=runaway.team,
        agent=AgentFactory(team=runaway.team, name="other"),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
    )

    evaluate(now, django_capture_on_commit_callbacks)
    assert Alert.objects.get().state == AlertState.FIRING
    assert events() == []

    still_running(runaway, now + timedelta(minutes=10))
    evaluate(now + timedelta(minutes=10), django_capture_on_commit_callbacks)  # the silence ended: told now
    assert events() == [("alert.firing", "webhook")]


@pytest.mark.django_db
def test_resolving_inside_a_silence_tells_no_one_and_a_silence_of_another_team_covers_nothing(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), channels=channels[:1])
    now = runaway.now
    Silence.objects.create(team=TeamFactory(slug="search"), starts_at=now, ends_at=now + timedelta(hours=1))
    evaluate(now, django_capture_on_commit_callbacks)
    assert events() == [("alert.firing", "webhook")]
    Silence.objects.create(rule=rule, starts_at=now, ends_at=now + timedelta(hours=1))
    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(10))

    evaluate(now + timedelta(minutes=1), django_capture_on_commit_callbacks)

    assert Alert.objects.get().state == AlertState.RESOLVED
    assert events() == [("alert.firing", "webhook")]


@pytest.mark.django_db
def test_one_open_alert_per_rule_and_subject_and_a_new_one_after_resolving(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), channels=channels[:1])
    now = runaway.now
    for minutes in range(3):
        evaluate(now + timedelta(minutes=minutes), django_capture_on_commit_callbacks)
    assert Alert.objects.count() == 1 and len(events()) == 1
    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(10))
    evaluate(now + timedelta(minutes=3), django_capture_on_commit_callbacks)
    AlertRule.objects.filter(pk=rule.pk).update(value=Decimal(1))

    evaluate(now + timedelta(minutes=4), django_capture_on_commit_callbacks)

    states = list(Alert.objects.order_by("id").values_list("state", flat=True))
    assert states == [AlertState.RESOLVED, AlertState.FIRING]
    assert [event for event, _ in events()] == ["alert.firing", "alert.resolved", "alert.firing"]


@pytest.mark.django_db
def test_disabling_a_rule_resolves_its_alerts_and_a_broken_rule_is_named_not_judged(
    runaway, channels, dispatched, django_capture_on_commit_callbacks
):
    rule = rule_create(kind="runaway_task", value=Decimal(1), channels=channels[:1])
    broken = rule_create(
        kind="threshold", metric="dollars_burnt", value=Decimal(1), window="1h", name="broken"
    )
    evaluate(runaway.now, django_capture_on_commit_callbacks)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)

    summary = alerts_evaluate(now=runaway.now + timedelta(minutes=1))

    assert Alert.objects.get().state == AlertState.RESOLVED
    assert "unknown metric 'dollars_burnt'" in summary.errors[broken.pk]


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_open_one_alert_and_notify_once(channels, dispatched):
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="triage")
    now = timezone.now()
    Task.objects.create(
        team=team, agent=agent, task_id="run-1", steps=50, cost_usd=Decimal(5), last_call_at=now
    )
    rule_create(kind="runaway_task", value=Decimal(1), channels=channels)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            alerts_evaluate(now=now)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert Alert.objects.count() == 1
    assert Delivery.objects.count() == len(channels)  # the second evaluation found it notified
    assert sorted(len(ids) for ids in dispatched) == [len(channels)]


CALLS_TABLE = re.compile(r"\bledger_call(_p\w+)?\b")


@pytest.mark.django_db
def test_an_evaluation_of_every_kind_reads_no_calls_table(priced, channels):
    from finops.guardrails.services import allowance_create
    from tests.alerts.conftest import event, ingest

    now = timezone.now()
    ingest(
        [
            event(
                n,
                at=now - timedelta(hours=n * 5),
                tokens=10_000 * n,
                task_id=f"run-{n % 3}",
                prompt_version=f"p@{n % 2}",
            )
            for n in range(60)
        ]
    )
    team, agent = TeamFactory(slug="support"), Agent.objects.get(name="triage")
    allowance_create(principal=None, team=team, agent=None, window="day", limit_usd=Decimal("0.01"))
    kinds = [
        {"kind": "threshold", "metric": metric, "window": window, "value": Decimal("0.001")}
        for metric in ("cost_usd", "cache_hit_rate", "cost_per_successful_task_usd", "tokens")
        for window in ("15m", "1h", "1d", "7d", "month")
    ] + [
        {"kind": "forecast", "value": Decimal("0.01")},
        {"kind": "anomaly", "window": "1h", "value": Decimal(2)},
        {"kind": "anomaly", "window": "7d", "value": Decimal(2)},
        {"kind": "runaway_task", "value": Decimal("0.001")},
        {"kind": "cache_collapse", "value": Decimal("0.01")},
        {"kind": "allowance"},
    ]
    for number, fields in enumerate(kinds):
        rule_create(name=f"r{number}", agent=agent if number % 2 else None, channels=channels, **fields)
    stats = (
        "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_xact_user_tables "
        "WHERE relname LIKE 'ledger\\_call%%'"
    )
    with connection.cursor() as cursor:
        cursor.execute(stats)
        before = cursor.fetchone()

    with CaptureQueriesContext(connection) as queries:
        summary = alerts_evaluate(now=now)

    with connection.cursor() as cursor:
        cursor.execute(stats)
        after = cursor.fetchone()
    assert summary.errors == {} and summary.fired  # it judged them all, and some fired
    assert [query["sql"] for query in queries if CALLS_TABLE.search(query["sql"])] == []
    assert after == before  # no scan of the calls table or a partition of it, in this transaction
    assert len(queries) < 40  # a fixed number of reads, not one per rule


@pytest.mark.django_db
def test_the_command_prints_what_it_evaluated_and_what_fired(runaway, channels):
    rule_create(kind="runaway_task", value=Decimal(1), name="loops", channels=channels)
    from io import StringIO

    out = StringIO()
    call_command("alerts", "evaluate", stdout=out)

    lines = out.getvalue().splitlines()
    alert = Alert.objects.get()
    assert lines[0].startswith("evaluated 1 rule(s) at ") and lines[0].endswith(
        "UTC: 1 breach(es), 2 notification(s) queued"
    )
    assert lines[1].startswith(
        f"  fired    alert {alert.pk}  rule {alert.rule_id} (loops)  task:support/run-1: task run-1"
    )
