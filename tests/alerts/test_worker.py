"""The beat entry runs on a real Celery worker: the task its schedule names exists on the worker and
evaluates the rules against the database the test committed to."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from finops.alerts.models import Alert, AlertChannel, AlertRule, AlertState, ChannelKind, Delivery
from finops.celery import app
from finops.ledger.models import Task
from finops.scheduled import BEAT_SCHEDULE
from tests.core.conftest import wait_for
from tests.core.test_celery_worker import TASK_TIMEOUT_SECONDS, celery_worker_process  # noqa: F401 - fixture
from tests.factories import AgentFactory, TeamFactory


@pytest.mark.celery_worker
def test_the_beat_entry_evaluates_the_rules_on_a_worker(celery_worker_process):  # noqa: F811
    # given a running task past its rule's bound, committed (the worker is another process)
    team = TeamFactory(slug="worker-alerts")
    agent = AgentFactory(team=team, name="looper")
    Task.objects.create(
        team=team,
        agent=agent,
        task_id="loop-1",
        steps=400,
        cost_usd=Decimal("87.5"),
        last_call_at=timezone.now(),
    )
    rule = AlertRule.objects.create(name="runaway", kind="runaway_task", metric="cost_usd", value=Decimal(10))
    channel = AlertChannel.objects.create(
        kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/", secret="whsec_x"
    )
    rule.channels.set([channel])
    entry = BEAT_SCHEDULE["evaluate-alerts"]
    assert entry["options"]["queue"] == "alerts" and entry["schedule"].minute == set(range(60))

    # when beat's entry is sent (to the test worker's own queue)
    app.send_task(entry["task"], queue=celery_worker_process.queue)

    # then the worker fired the alert and queued its notification
    alert = wait_for(
        lambda: Alert.objects.filter(rule=rule).first(),
        timeout=TASK_TIMEOUT_SECONDS,
        interval=0.3,
        what=f"the worker to evaluate; worker log:\n{celery_worker_process.log()}",
    )
    assert (alert.state, alert.subject, alert.value) == (
        AlertState.FIRING,
        "task:worker-alerts/loop-1",
        Decimal("87.5"),
    )
    assert list(Delivery.objects.values_list("channel_id", "event")) == [(channel.pk, "alert.firing")]
    assert "succeeded" in wait_for(
        lambda: "succeeded" in celery_worker_process.log() and celery_worker_process.log(),
        timeout=10,
        what="log",
    )
