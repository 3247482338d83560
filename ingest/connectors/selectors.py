"""Reads of the connectors and their statement lines."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from ingest.connectors.models import Connector, ConnectorRun, RunStatus

# a connector pulled (or queued) this recently is not due again: hourly beat plus a manual "Pull now"
# must not stack pulls
DUE_AFTER = timedelta(minutes=30)


def connectors_list(*, principal) -> QuerySet[Connector]:
    return Connector.objects.restrict(principal)


def connectors_due(*, now: datetime) -> QuerySet[Connector]:
    """Enabled connectors not pulled lately and with no pull waiting in the queue."""
    recently_queued = ConnectorRun.objects.filter(
        status__in=[RunStatus.QUEUED, RunStatus.RUNNING], queued_at__gt=now - DUE_AFTER
    ).values("connector_id")
    return (
        Connector.objects.filter(enabled=True)
        .filter(Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - DUE_AFTER))
        .exclude(pk__in=recently_queued)
    )


def connector_recent_runs(*, connector_id: int, limit: int = 10) -> QuerySet[ConnectorRun]:
    return ConnectorRun.objects.filter(connector_id=connector_id)[:limit]
