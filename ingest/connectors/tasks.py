"""Worker jobs of the connectors. Thin: ids in, the work is in services.

Both run on the "ingest" queue: the beat entry names it, and connector_run_request enqueues with it.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from ingest.connectors.clients import TransientProviderError
from ingest.connectors.models import Connector
from ingest.connectors.selectors import connectors_due
from ingest.connectors.services import connector_pull, connector_run_request

logger = logging.getLogger(__name__)


@shared_task(
    name="ingest.connectors.tasks.pull_connector",
    autoretry_for=(TransientProviderError, ConnectionError),
    retry_backoff=60,
    retry_backoff_max=30 * 60,
    max_retries=4,
    acks_late=True,  # connector_pull is idempotent: lines upsert on their natural key, the cursor resumes
)
def pull_connector(connector_id: int, run_id: int | None = None) -> int:
    """Pull one connector's report; returns the statement lines written."""
    try:
        run = connector_pull(connector_id=connector_id, run_id=run_id)
    except Connector.DoesNotExist:
        logger.info("connector %s was deleted before its pull ran", connector_id)
        return 0
    return run.rows


@shared_task(name="ingest.connectors.tasks.pull_due_connectors")
def pull_due_connectors() -> int:
    """Queue a pull of every enabled connector that is due."""
    due_ids = list(connectors_due(now=timezone.now()).values_list("pk", flat=True))
    for connector_id in due_ids:
        connector_run_request(connector_id=connector_id)
    return len(due_ids)
