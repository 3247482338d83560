"""Worker jobs of the alerts. Thin: the work is in services."""

from __future__ import annotations

from celery import shared_task

from finops.alerts.delivery import deliveries_due_dispatch, delivery_attempt

# --- deliveries (finops/alerts/delivery.py) --------------------------------------------------------------


@shared_task(name="finops.alerts.tasks.deliver", acks_late=True)  # the attempt claims its row: idempotent
def deliver(delivery_id: int) -> str | None:
    """One attempt of one delivery; its outcome is on the row (and the channel's health)."""
    outcome = delivery_attempt(delivery_id=delivery_id)
    return outcome.status if outcome else None


@shared_task(name="finops.alerts.tasks.retry_due_deliveries", acks_late=True)  # idempotent: claims decide
def retry_due_deliveries() -> int:
    """Enqueue every delivery whose next attempt is due (beat, every minute)."""
    return deliveries_due_dispatch()


# --- end of deliveries -----------------------------------------------------------------------------------
