"""Worker jobs of pricing. Thin: arguments are primitives, the work is in services."""

from __future__ import annotations

import logging

from celery import shared_task

from finops.ledger.services import calls_reprice, unpriced_call_models
from finops.pricing.services import PriceBook

logger = logging.getLogger(__name__)


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
