"""The one schedule file: every periodic job of the worker, staggered, with expiry ~1.5x its interval."""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Adding a price in the admin enqueues a reprice at once; this sweep catches what slipped by
    # (a price added by SQL, a worker that was down).
    "reprice-unpriced-calls": {
        "task": "finops.pricing.tasks.reprice_unpriced_calls",
        "schedule": crontab(minute="7,37"),
        "options": {"queue": "pricing", "expires": 45 * 60},
    },
    # Re-pricing runs whose enqueue was lost (a price saved while the broker was down): each runs once.
    "run-queued-reprices": {
        "task": "finops.pricing.tasks.run_queued_reprices",
        "schedule": crontab(minute="*/5"),
        "options": {"queue": "pricing", "expires": 7 * 60},
    },
    # Provider usage and cost reports into statement lines; each pull resumes at its connector's cursor.
    "pull-due-connectors": {
        "task": "ingest.connectors.tasks.pull_due_connectors",
        "schedule": crontab(minute="23"),
        "options": {"queue": "ingest", "expires": 90 * 60},
    },
    # Login and token failure counters past their window: they would restart anyway, so only space is saved.
    "prune-auth-failures": {
        "task": "finops.accounts.tasks.prune_auth_failures",
        "schedule": crontab(minute="41"),
        "options": {"queue": "default", "expires": 90 * 60},
    },
    # Settled and expired guard reservations, an hour on: the checks sum only the open ones.
    "purge-reservations": {
        "task": "finops.guardrails.tasks.purge_reservations",
        "schedule": crontab(minute="3-59/10"),
        "options": {"expires": 15 * 60},
    },
    # Alert rules, judged from the rollups every minute (SPEC.md, "Alerts"); a late run is stale at once.
    "evaluate-alerts": {
        "task": "finops.alerts.tasks.evaluate_alerts",
        "schedule": crontab(),
        "options": {"queue": "alerts", "expires": 90},
    },
    # The minute rollup past its retention (finops/ledger/rollups.py): nothing reads it.
    "purge-recent-rollups": {
        "task": "finops.ledger.tasks.purge_recent_rollups",
        "schedule": crontab(minute="17"),
        "options": {"queue": "default", "expires": 90 * 60},
    },
    # Alert deliveries whose retry is due (backoff in finops/alerts/delivery.py), and any whose first
    # enqueue was lost; two sweeps at once are safe, each attempt claims its row first.
    "retry-due-deliveries": {
        "task": "finops.alerts.tasks.retry_due_deliveries",
        "schedule": crontab(minute="*"),
        "options": {"expires": 90},
    },
    # Calls of closed months that arrived after the close, as adjustments of the next open month
    # (finops/bills/adjustments.py); recompute-and-replace, so a late or doubled run counts nothing twice.
    "materialise-late-adjustments": {
        "task": "finops.bills.tasks.materialise_late_adjustments",
        "schedule": crontab(minute="1-59/5"),
        "options": {"queue": "default", "expires": 7 * 60},
    },
}
