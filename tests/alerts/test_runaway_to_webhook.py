"""The seeds' incident, end to end: a loop that resends its growing context every step passes its
runaway rule's bound, and the next evaluation (beat's entry, on a real worker) has the signed alert on
the team's webhook within one evaluation interval."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from finops.alerts.models import Alert
from finops.alerts.services import channel_create
from finops.celery import CeleryQueue, app
from finops.ledger.models import Task
from finops.scheduled import BEAT_SCHEDULE
from tests.alerts.conftest import event, ingest, rule_create, usd
from tests.alerts.receivers import WebhookReceiver
from tests.core.conftest import wait_for
from tests.core.test_celery_worker import celery_worker_process  # noqa: F401 — the real worker fixture
from tests.factories import TeamFactory, UserFactory

EVALUATION_INTERVAL_SECONDS = 60  # beat's entry runs every minute
CONTEXT_STEP = 12_000  # tokens of context the loop appends each step
BOUND_USD = Decimal(2)


@pytest.mark.celery_worker
@pytest.mark.parametrize("celery_worker_process", [(CeleryQueue.ALERTS, CeleryQueue.DEFAULT)], indirect=True)
def test_a_runaway_loop_reaches_the_webhook_within_one_evaluation(celery_worker_process, priced):  # noqa: F811
    assert BEAT_SCHEDULE["evaluate-alerts"]["schedule"].minute == set(range(60))  # every minute
    team = TeamFactory(slug="support")
    admin = UserFactory(username="oncall-admin", org_role="admin")
    with WebhookReceiver() as receiver:
        channel, secret = channel_create(principal=admin, team=team, kind="webhook", target=receiver.url)
        receiver.secret = secret  # the receiver verifies every delivery's signature from now on
        rule = rule_create(
            name="runaway loop", team=team, kind="runaway_task", metric="cost_usd", value=BOUND_USD,
            channels=[channel],
        )  # fmt: skip

        # a loop whose step n resends n·12K tokens at $1/MTok: it passes $2 at the first n with
        # 12,000·n(n+1)/2 tokens over 2,000,000, i.e. n = 18 (342 · 6,000 = 2,052,000 tokens)
        steps = next(n for n in range(1, 100) if usd(CONTEXT_STEP * n * (n + 1) // 2) > BOUND_USD)
        assert steps == 18
        now = timezone.now()
        ingest(
            [
                event(f"loop-{n}", at=now - timedelta(seconds=5 * (steps - n)), tokens=CONTEXT_STEP * n, task_id="loop-7")
                for n in range(1, steps + 1)
            ]
        )  # fmt: skip
        spent = usd(CONTEXT_STEP * steps * (steps + 1) // 2)
        assert Task.objects.get(task_id="loop-7").cost_usd == spent  # the writer's own sum, the same
        breached_at = time.monotonic()

        # beat's entry, as it is sent every minute, to the worker's alerts queue
        app.send_task(BEAT_SCHEDULE["evaluate-alerts"]["task"], queue=CeleryQueue.ALERTS)
        delivery = wait_for(
            lambda: receiver.requests[0] if receiver.requests else None,
            timeout=EVALUATION_INTERVAL_SECONDS,
            interval=0.2,
            what=f"the signed alert on the webhook; worker log:\n{celery_worker_process.log()}",
        )
        arrived_after = time.monotonic() - breached_at

    assert arrived_after < EVALUATION_INTERVAL_SECONDS
    assert delivery.verify_error is None  # signed as Standard Webhooks says, checked independently
    body = json.loads(delivery.body)
    alert = Alert.objects.get(rule=rule)
    assert body["type"] == "alert.firing"
    assert body["alert"]["subject"] == "task:support/loop-7" and body["alert"]["state"] == "firing"
    assert Decimal(body["alert"]["value"]) == spent and Decimal(body["alert"]["threshold"]) == BOUND_USD
    assert body["rule"]["name"] == "runaway loop" and body["url"].endswith(f"/alerts/{alert.pk}/")
    assert delivery.headers["webhook-id"] == alert.deliveries.get().message_id
