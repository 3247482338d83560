"""Worker jobs of pricing. Thin: arguments are primitives, the work is in services."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from finops.ledger.services import calls_reprice, unpriced_call_models
from finops.pricing.models import RepriceRun, RepriceStatus
from finops.pricing.reprice import reprice_run_execute
from finops.pricing.services import PriceBook

logger = logging.getLogger(__name__)
STUCK_AFTER = timedelta(hours=3)  # a year of calls re-prices in well under that


@shared_task(
    name="finops.pricing.tasks.reprice_unpriced_calls",
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,  # calls_reprice is idempotent: only still-unpriced calls are touched
)
def reprice_unpriced_calls(provider: str | None = None, model: str | None = None) -> int:
    """Price the calls that were unpriced, for one model or for every model that has some."""
    price_book = PriceBook.load()
    targets = [(provider, model)] if provider and model else unpriced_call_models()
    priced = 0
    for target_provider, target_model in targets:
        count = calls_reprice(price_book=price_book, provider=target_provider, model=target_model)
        if count:
            logger.info("priced %d calls of %s/%s", count, target_provider, target_model)
        priced += count
    return priced


@shared_task(
    name="finops.pricing.tasks.reprice_run",
    autoretry_for=(ConnectionError, OperationalError),  # a deadlock with the writer: the run is retried
    retry_backoff=True,
    max_retries=5,
    acks_late=True,  # a run is idempotent: a month re-priced twice is priced the same
)
def reprice_run(run_id: int) -> int:
    """Carry out one re-pricing run (finops/pricing/reprice.py); answers the calls whose cost changed."""
    run = reprice_run_execute(run_id=run_id)
    logger.info("reprice run %s: %d calls re-priced of %d", run.pk, run.calls_repriced, run.calls_scanned)
    return run.calls_repriced


@shared_task(name="finops.pricing.tasks.run_queued_reprices", expires=10 * 60)
def run_queued_reprices() -> int:
    """Start the runs still queued a minute after they were made (their enqueue was lost: a broker that
    was down, a worker that died before taking it), oldest first; and mark failed, to be run again, a
    run still `running` hours after it started (its worker died: its done months are kept)."""
    started = 0
    now = timezone.now()
    RepriceRun.objects.filter(status=RepriceStatus.RUNNING, started_at__lt=now - STUCK_AFTER).update(
        status=RepriceStatus.FAILED, error="its worker stopped before it finished; run again by the sweep"
    )
    for run_id in RepriceRun.objects.filter(
        status=RepriceStatus.FAILED, started_at__lt=now - STUCK_AFTER, error__startswith="its worker stopped"
    ).values_list("pk", flat=True):
        reprice_run_execute(run_id=run_id)
        started += 1
    cutoff = now - timedelta(minutes=1)
    for run_id in (
        RepriceRun.objects.filter(status=RepriceStatus.QUEUED, requested_at__lt=cutoff)
        .values_list("pk", flat=True)
        .order_by("requested_at")
    ):
        reprice_run_execute(run_id=run_id)
        started += 1
    return started
