"""Reads of the connectors and their statement lines."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from ingest.connectors.models import Connector, ConnectorRun, RunStatus, StatementLine

# a connector pulled (or queued) this recently is not due again: hourly beat plus a manual "Pull now"
# must not stack pulls
DUE_AFTER = timedelta(minutes=30)


def connectors_list() -> QuerySet[Connector]:
    return Connector.objects.all()


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


def statement_lines_filter(
    *,
    provider: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = None,
) -> QuerySet[StatementLine]:
    """Lines whose bucket starts in [start, end)."""
    lines = StatementLine.objects.all()
    if provider:
        lines = lines.filter(provider=provider)
    if start:
        lines = lines.filter(period_start__gte=start)
    if end:
        lines = lines.filter(period_start__lt=end)
    if source:
        lines = lines.filter(source=source)
    return lines.order_by("period_start", "id")
