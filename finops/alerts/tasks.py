"""Worker jobs of the alerts. Thin: the work is in finops.alerts.evaluate."""

from __future__ import annotations

from celery import shared_task

from finops.alerts.evaluate import alerts_evaluate


@shared_task(name="finops.alerts.tasks.evaluate_alerts")
def evaluate_alerts() -> dict:
    """Every rule, now. Not acks_late: a redelivered evaluation would judge a later minute anyway, and
    the next one is a minute away."""
    summary = alerts_evaluate()
    return {
        "rules": summary.rules,
        "fired": len(summary.fired),
        "resolved": len(summary.resolved),
        "deliveries": len(summary.deliveries),
        "errors": len(summary.errors),
    }
