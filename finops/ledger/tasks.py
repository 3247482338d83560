"""Worker jobs of the ledger. Thin: the work is in services."""

from __future__ import annotations

from celery import shared_task

from finops.ledger.rollups import recent_rollups_purge


@shared_task(name="finops.ledger.tasks.purge_recent_rollups", acks_late=True)  # idempotent
def purge_recent_rollups() -> int:
    return recent_rollups_purge()
