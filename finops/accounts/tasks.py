"""Worker jobs of accounts. Thin: the work is in services."""

from __future__ import annotations

from celery import shared_task

from finops.accounts.throttling import auth_failures_prune


@shared_task(name="finops.accounts.tasks.prune_auth_failures", acks_late=True)  # a delete: idempotent
def prune_auth_failures() -> int:
    """Drop the login and token failure counters whose window has ended."""
    return auth_failures_prune()
