"""Worker jobs of bills. Thin: the work is in services."""

from __future__ import annotations

from celery import shared_task

from finops.bills.adjustments import late_adjustments_materialise


@shared_task(name="finops.bills.tasks.materialise_late_adjustments", acks_late=True)  # idempotent
def materialise_late_adjustments() -> int:
    return late_adjustments_materialise()
