"""Deliveries over time: retries with backoff (the clock is passed in, nobody sleeps through it), giving
up, the channel's health, two runners at once, the minute's sweep, and a real Celery worker."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from finops.alerts.delivery import deliveries_dispatch, deliveries_due, delivery_attempt
from finops.alerts.models import AlertChannel, ChannelKind, Delivery, DeliveryStatus
from finops.alerts.selectors import channels_failing
from finops.alerts.signing import webhook_secret_new
from finops.alerts.tasks import retry_due_deliveries
from finops.scheduled import BEAT_SCHEDULE
from tests.alerts.receivers import Answer, WebhookReceiver, delivery_make, standard_webhook_verify
from tests.core.conftest import wait_for
from tests.core.test_celery_worker import celery_worker_process  # noqa: F401 — the real worker fixture
from tests.factories import MembershipFactory, TeamFactory, UserFactory

# the schedule as documented (README, delivery.py), written out here rather than imported
DOCUMENTED_DELAYS = [
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
]
DOCUMENTED_DELAYS.append(timedelta(hours=2))


@pytest.fixture
def team(db):
    return TeamFactory(slug="support")


@pytest.fixture
def secret() -> str:
    return webhook_secret_new()


@pytest.fixture
def receiver(secret):
    with WebhookReceiver(secret=secret) as receiver:
        yield receiver


@pytest.fixture
def admin(db):
    return UserFactory(username="org-admin", org_role="admin")


def test_a_500_then_success_on_retry_keeps_the_webhook_id_and_signs_a_fresh_timestamp(
    team, secret, receiver, admin
):
    receiver.answers.append(Answer(status=500, body=b"database is down"))
    t0 = timezone.now().replace(microsecond=0)
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=t0)

    # the first attempt fails: retry in 30 s, and the channel shows as failing
    first = delivery_attempt(delivery_id=delivery.pk, now=t0)
    assert (first.status, first.attempts, first.next_attempt_at) == (
        DeliveryStatus.PENDING,
        1,
        t0 + timedelta(seconds=30),
    )
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500: database is down")
    [failing] = channels_failing(principal=admin)
    assert failing.pk == delivery.channel_id
    assert (failing.consecutive_failures, failing.last_error, failing.last_failure_at) == (
        1,
        "HTTP 500: database is down",
        t0,
    )
    assert (failing.deliveries_retrying, failing.deliveries_failed) == (1, 0)

    # not due before its time: nothing is sent
    assert delivery_attempt(delivery_id=delivery.pk, now=t0 + timedelta(seconds=29)) is None
    assert len(receiver.requests) == 1

    # due: sent, with the same webhook-id and this attempt's timestamp
    t1 = t0 + timedelta(seconds=31)
    receiver.clock = t1.timestamp
    second = delivery_attempt(delivery_id=delivery.pk, now=t1)
    assert (second.status, second.attempts) == (DeliveryStatus.SENT, 2)
    assert [request.verify_error for request in receiver.requests] == [None, None]
    assert [request.headers["webhook-id"] for request in receiver.requests] == [delivery.message_id] * 2
    timestamps = [request.headers["webhook-timestamp"] for request in receiver.requests]
    assert timestamps == [str(int(t0.timestamp())), str(int(t1.timestamp()))]
    assert receiver.requests[0].body == receiver.requests[1].body
    assert (
        receiver.requests[0].headers["webhook-signature"] != receiver.requests[1].headers["webhook-signature"]
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.sent_at, delivery.next_attempt_at, delivery.last_error) == (
        DeliveryStatus.SENT,
        t1,
        None,
        "",
    )
    channel = AlertChannel.objects.get(pk=delivery.channel_id)
    assert (channel.consecutive_failures, channel.last_success_at) == (0, t1)
    assert list(channels_failing(principal=admin)) == []


def test_after_the_last_try_the_delivery_fails_and_the_channel_shows_failing(team, secret, receiver, admin):
    receiver.default = Answer(status=503, body=b"busy")
    at = timezone.now().replace(microsecond=0)
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=at)
    tried_at = []

    for attempt, delay in enumerate([*DOCUMENTED_DELAYS, None], start=1):
        receiver.clock = at.timestamp
        outcome = delivery_attempt(delivery_id=delivery.pk, now=at)
        tried_at.append(at)
        assert outcome.attempts == attempt
        if delay is None:
            break
        assert outcome.status == DeliveryStatus.PENDING
        assert outcome.next_attempt_at == at + delay
        assert delivery_attempt(delivery_id=delivery.pk, now=at + delay - timedelta(seconds=1)) is None
        at += delay

    assert outcome.status == DeliveryStatus.FAILED
    assert delivery_attempt(delivery_id=delivery.pk, now=at + timedelta(days=1)) is None  # given up for good
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.sent_at) == (
        DeliveryStatus.FAILED,
        6,
        None,
        None,
    )
    assert (delivery.last_status_code, delivery.last_error) == (503, "HTTP 503: busy")
    # six requests, one webhook-id, each signed at its own time
    assert len(receiver.requests) == 6
    assert {request.headers["webhook-id"] for request in receiver.requests} == {delivery.message_id}
    for request, when in zip(receiver.requests, tried_at, strict=True):
        assert request.headers["webhook-timestamp"] == str(int(when.timestamp()))
        standard_webhook_verify(
            secret=secret, headers=request.headers, body=request.body, now=when.timestamp()
        )
    [failing] = channels_failing(principal=admin)
    assert (failing.pk, failing.consecutive_failures, failing.last_failure_at) == (delivery.channel_id, 6, at)
    assert (failing.deliveries_retrying, failing.deliveries_failed) == (0, 1)


def test_channels_failing_is_scoped_and_newest_failure_first(team, admin, django_assert_num_queries):
    now = timezone.now()
    other = TeamFactory(slug="research")
    support_channel = AlertChannel.objects.create(
        team=team, kind=ChannelKind.SLACK, target="http://x/1", consecutive_failures=2, last_failure_at=now
    )
    org_channel = AlertChannel.objects.create(
        team=None,
        kind=ChannelKind.EMAIL,
        target="a@example.com",
        consecutive_failures=1,
        last_failure_at=now + timedelta(minutes=1),
    )
    research_channel = AlertChannel.objects.create(
        team=other,
        kind=ChannelKind.SLACK,
        target="http://x/3",
        consecutive_failures=1,
        last_failure_at=now - timedelta(minutes=1),
    )
    AlertChannel.objects.create(
        team=team, kind=ChannelKind.SLACK, target="http://x/4", consecutive_failures=0, last_failure_at=now
    )  # failed once, then succeeded: healthy
    support_sre = MembershipFactory(team=team, role="sre").user

    with django_assert_num_queries(1):  # the page lists them with their teams and counts in one query
        listed = [
            (channel.pk, channel.team and channel.team.slug) for channel in channels_failing(principal=admin)
        ]
    assert listed == [
        (org_channel.pk, None),
        (support_channel.pk, "support"),
        (research_channel.pk, "research"),
    ]
    assert [channel.pk for channel in channels_failing(principal=support_sre)] == [support_channel.pk]
    assert list(channels_failing(principal=None)) == []


def test_a_delivery_held_by_another_runner_is_skipped_not_sent_twice(transactional_db, secret, receiver):
    team = TeamFactory(slug="support")
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)
    locked, release = threading.Event(), threading.Event()

    def other_runner() -> None:
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().get(pk=delivery.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=other_runner)
    holder.start()
    try:
        assert locked.wait(10)
        assert delivery_attempt(delivery_id=delivery.pk, now=now) is None  # skipped, not blocked
        assert receiver.requests == []
    finally:
        release.set()
        holder.join()

    assert delivery_attempt(delivery_id=delivery.pk, now=now).status == DeliveryStatus.SENT
    assert len(receiver.requests) == 1


def test_two_runners_at_once_send_once(transactional_db, secret, receiver):
    team = TeamFactory(slug="support")
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)
    receiver.default = Answer(status=204, delay=0.5)  # the first send is still in flight when the second asks
    start = threading.Barrier(4)
    outcomes = []

    def runner() -> None:
        try:
            start.wait(10)
            outcomes.append(delivery_attempt(delivery_id=delivery.pk, now=now))
        finally:
            connection.close()

    runners = [threading.Thread(target=runner) for _ in range(4)]
    for thread in runners:
        thread.start()
    for thread in runners:
        thread.join(30)

    assert sorted(outcome is None for outcome in outcomes) == [False, True, True, True]
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)


def test_the_sweep_takes_pending_deliveries_that_are_due_and_nothing_else(team):
    now = timezone.now()
    target = "http://127.0.0.1:9/hook"
    made = {}
    for name, status, next_attempt_at in [
        ("never tried", DeliveryStatus.PENDING, None),
        ("retry due", DeliveryStatus.PENDING, now - timedelta(seconds=1)),
        ("retry due now", DeliveryStatus.PENDING, now),
        ("retry later", DeliveryStatus.PENDING, now + timedelta(seconds=1)),
        ("sent", DeliveryStatus.SENT, None),
        ("gave up", DeliveryStatus.FAILED, None),
    ]:
        delivery = delivery_make(team=team, kind=ChannelKind.SLACK, target=target, now=now)
        Delivery.objects.filter(pk=delivery.pk).update(status=status, next_attempt_at=next_attempt_at)
        made[name] = delivery.pk

    due = deliveries_due(now=now)

    assert sorted(due) == sorted([made["never tried"], made["retry due"], made["retry due now"]])


def test_the_sweep_runs_every_minute_on_the_default_queue():
    entry = BEAT_SCHEDULE["retry-due-deliveries"]
    assert entry["task"] == retry_due_deliveries.name
    assert entry["schedule"].minute == set(range(60)) and len(entry["schedule"].hour) == 24
    assert entry["options"] == {"expires": 90}


@pytest.mark.celery_worker
def test_a_real_worker_delivers_and_retries_a_webhook(celery_worker_process, secret, receiver):  # noqa: F811
    # given a committed delivery whose receiver fails once
    team = TeamFactory(slug="worker-alerts")
    receiver.answers.append(Answer(status=502, body=b"bad gateway"))
    delivery = delivery_make(
        team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=timezone.now()
    )

    # when it is dispatched to the worker: the first attempt fails and is scheduled again
    deliveries_dispatch([delivery.pk], queue=celery_worker_process.queue)
    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, attempts=1).exists(),
        timeout=45,
        what=f"the worker's first attempt; worker log:\n{celery_worker_process.log()}",
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.PENDING, "HTTP 502: bad gateway")
    retry_in = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 0 < retry_in <= 30

    # and once due (moved rather than waited for) it is dispatched again and sent
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    deliveries_dispatch([delivery.pk], queue=celery_worker_process.queue)
    wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENT).exists(),
        timeout=45,
        what=f"the worker's second attempt; worker log:\n{celery_worker_process.log()}",
    )

    assert [request.verify_error for request in receiver.requests] == [None, None]
    assert {request.headers["webhook-id"] for request in receiver.requests} == {delivery.message_id}
    assert int(receiver.requests[1].headers["webhook-timestamp"]) >= int(time.time()) - 60
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert AlertChannel.objects.get(pk=delivery.channel_id).consecutive_failures == 0
    assert "finops.alerts.tasks.deliver" in celery_worker_process.log()
