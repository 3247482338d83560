"""A discount saved as finops saves one queues its re-pricing run on commit, and a real Celery worker
carries it out: the calls the worker sees (committed, another process) get the discounted price."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from finops.celery import app
from finops.ledger.models import Call, DailyRollup
from finops.pricing.models import ModelPriceOverride, RepriceRun
from finops.pricing.prices import discount_create
from ingest.writer import events_ingest
from tests.core.conftest import wait_for
from tests.core.test_celery_worker import (  # noqa: F401 - fixture
    MODEL,
    PROVIDER,
    TASK_TIMEOUT_SECONDS,
    celery_worker_process,
)


@pytest.mark.celery_worker
def test_a_saved_discount_is_repriced_by_the_worker(celery_worker_process):  # noqa: F811
    # given: two committed calls of acme this month, at acme's price ($2 input, $10 output per MTok)
    now = datetime.now(UTC).replace(microsecond=0)
    ModelPriceOverride.objects.create(
        provider=PROVIDER,
        model=MODEL,
        effective_from=now - timedelta(days=400),
        uncached_input_per_mtok=Decimal(2),
        output_per_mtok=Decimal(10),
    )
    usage = {"uncached_input": 123_457, "output": 7_891}
    events = [
        {
            "event_id": f"reprice-worker-{uuid.uuid4()}",
            "timestamp": (now - timedelta(minutes=minutes)).isoformat(),
            "team": "reprice-worker",
            "agent": "pricer",
            "provider": PROVIDER,
            "model": MODEL,
            "usage": usage,
        }
        for minutes in (1, 2)
    ]
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == 2
    list_price = Decimal(123_457 * 2 + 7_891 * 10) / 1_000_000
    assert list(Call.objects.filter(provider=PROVIDER).values_list("cost_usd", flat=True)) == [list_price] * 2

    # when: finops saves 20% off acme from a month ago (the run is sent to the worker on commit)
    _, run = discount_create(
        principal=None, provider=PROVIDER, percent=Decimal(20), effective_from=now - timedelta(days=31)
    )
    if celery_worker_process.queue != "pricing":  # a shared broker: the test worker's own queue
        app.send_task("finops.pricing.tasks.reprice_run", args=[run.pk], queue=celery_worker_process.queue)

    # then: the worker re-priced both calls, and their daily rollup, at 80% of the list price
    run = wait_for(
        lambda: RepriceRun.objects.filter(pk=run.pk, status__in=["done", "failed"]).first(),
        timeout=TASK_TIMEOUT_SECONDS,
        interval=0.3,
        what=f"the worker to re-price; worker log:\n{celery_worker_process.log()}",
    )
    assert run.status == "done", run.error
    discounted = (list_price * Decimal("0.8")).quantize(Decimal("1e-12"))
    assert run.calls_repriced == 2
    assert list(Call.objects.filter(provider=PROVIDER).values_list("cost_usd", flat=True)) == [discounted] * 2
    assert (
        sum(DailyRollup.objects.filter(provider=PROVIDER).values_list("cost_usd", flat=True))
        == 2 * discounted
    )
