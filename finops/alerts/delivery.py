"""Deliveries: sending an alert's notification to a channel, recording every attempt, retrying with
backoff, and keeping the channel's health (SPEC.md, "Alerts").

An attempt is tried at once (the evaluation enqueues it when its transaction commits), then again after
30 s, 2 min, 10 min, 30 min and 2 h; the sixth failure gives up (`failed`). A failure that no retry can
fix (an unusable URL or secret) gives up at once. Every minute beat enqueues the deliveries that are due,
which also catches any whose first enqueue was lost (a broker down at commit).

Two runners never attempt the same delivery: an attempt first *claims* the row in a short transaction
(`SELECT ... FOR UPDATE SKIP LOCKED`, only if it is still pending and due) by moving `next_attempt_at`
past the attempt's longest duration, then sends with no transaction open, then records the outcome. A
worker that dies mid-send leaves the claim to expire, and the delivery is tried again after
`CLAIM_SECONDS`; the receiver deduplicates by `webhook-id`, which is the same on every try."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from finops.alerts.channels import SendResult, channel_send
from finops.alerts.models import AlertChannel, Delivery, DeliveryStatus
from finops.celery import CeleryQueue

logger = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, ... failure; one more failure than there are delays gives up.
RETRY_DELAYS_SECONDS: tuple[int, ...] = (30, 2 * 60, 10 * 60, 30 * 60, 2 * 60 * 60)
# How long a claimed delivery is left to its runner: well past an HTTP attempt (5 s) or an SMTP one.
CLAIM_SECONDS = 5 * 60
DUE_BATCH = 500
SWEEP_TASK_EXPIRES_SECONDS = 2 * 60


def deliveries_dispatch(
    delivery_ids: Sequence[int], *, queue: str = CeleryQueue.DEFAULT, expires: int | None = None
) -> None:
    """Enqueue an attempt of each delivery. Call it from `transaction.on_commit`, so the worker sees the
    rows. A broker that cannot be reached loses nothing: the rows stay pending and due, and the
    minute's sweep (`deliveries_due_dispatch`) enqueues them again."""
    from finops.alerts.tasks import deliver

    for delivery_id in delivery_ids:
        try:
            deliver.apply_async(args=[delivery_id], queue=queue, expires=expires)
        except Exception:  # the sweep retries; the caller's committed work must not fail
            logger.exception("delivery %s could not be queued; the minute's sweep will retry it", delivery_id)


def _due(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def deliveries_due(*, now: datetime | None = None, limit: int = DUE_BATCH) -> list[int]:
    """Pending deliveries whose next attempt is due (or that were never claimed), oldest first."""
    now = now or timezone.now()
    return list(
        Delivery.objects.filter(_due(now))
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def deliveries_due_dispatch(*, now: datetime | None = None) -> int:
    """The minute's sweep: enqueue every due delivery. Two sweeps at once (or a sweep beside the
    evaluation's own enqueue) only enqueue an attempt twice; the claim lets one of them through."""
    delivery_ids = deliveries_due(now=now)
    # a copy still queued when the next sweep runs is dropped: that sweep enqueued its own
    deliveries_dispatch(delivery_ids, expires=SWEEP_TASK_EXPIRES_SECONDS)
    return len(delivery_ids)


def _claim(*, delivery_id: int, now: datetime) -> Delivery | None:
    """The delivery, now reserved to this runner, or None: sent, given up, not due yet, or being
    attempted by another runner (its row locked right now, or claimed a moment ago)."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel", "alert", "alert__rule")
            .filter(_due(now), pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    return delivery


@dataclass(frozen=True)
class AttemptOutcome:
    delivery_id: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    result: SendResult


def _record(
    *, delivery: Delivery, result: SendResult, now: datetime, retry_delays: Sequence[int]
) -> AttemptOutcome:
    attempts = delivery.attempts + 1
    if result.ok:
        status, next_attempt_at = DeliveryStatus.SENT, None
    elif result.permanent or attempts > len(retry_delays):
        status, next_attempt_at = DeliveryStatus.FAILED, None
    else:
        status, next_attempt_at = DeliveryStatus.PENDING, now + timedelta(seconds=retry_delays[attempts - 1])
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_status_code=result.status_code,
            last_error=result.error,
            sent_at=now if result.ok else None,
        )
        channel = AlertChannel.objects.filter(pk=delivery.channel_id)
        if result.ok:
            channel.update(last_success_at=now, consecutive_failures=0)
        else:
            channel.update(
                last_failure_at=now,
                last_error=result.error,
                consecutive_failures=F("consecutive_failures") + 1,
            )
    return AttemptOutcome(
        delivery_id=delivery.pk,
        status=status,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        result=result,
    )


def delivery_attempt(
    *,
    delivery_id: int,
    now: datetime | None = None,
    retry_delays: Sequence[int] = RETRY_DELAYS_SECONDS,
) -> AttemptOutcome | None:
    """Try one delivery once, if it is pending, due and not being tried elsewhere, and record it: attempts
    + 1, the answer's status and error, `sent` or the next attempt's time or `failed`, and the channel's
    health. None when there was nothing to do. `now` and `retry_delays` are the clock and the schedule
    (tests pass their own; the webhook's timestamp is `now`)."""
    claimed_at = now or timezone.now()
    delivery = _claim(delivery_id=delivery_id, now=claimed_at)
    if delivery is None:
        return None
    try:
        result = channel_send(delivery=delivery, now=claimed_at)
    except Exception as error:  # a bug in a sender is recorded on the delivery, not lost
        logger.exception("delivery %s: the %s sender failed", delivery.pk, delivery.channel.kind)
        result = SendResult(ok=False, error=f"internal error: {type(error).__name__}: {error}"[:1000])
    outcome = _record(delivery=delivery, result=result, now=now or timezone.now(), retry_delays=retry_delays)
    log = logger.info if result.ok else logger.warning
    log(
        "delivery %s to %s channel %s: %s after %s attempt(s)%s",
        delivery.pk,
        delivery.channel.kind,
        delivery.channel_id,
        outcome.status,
        outcome.attempts,
        f" ({result.error})" if result.error else "",
    )
    return outcome
