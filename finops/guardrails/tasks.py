"""Worker jobs of the guardrails. Thin: the work is in services."""

from __future__ import annotations

from celery import shared_task

from finops.guardrails.services import reservations_purge


@shared_task(name="finops.guardrails.tasks.purge_reservations", acks_late=True)  # idempotent
def purge_reservations() -> int:
    return reservations_purge()
