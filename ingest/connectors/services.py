"""Writes of the connectors: create one, request a pull, pull a provider report into statement lines.

A pull pages from the connector's cursor to now. Each page's lines and the advanced cursor are written
in one transaction, so a pull that dies half-way resumes where the last saved page ended: no gap, no
double count. Lines are upserted on their natural key, so re-pulling a bucket updates it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from finops.celery import CeleryQueue
from ingest.connectors.clients import (
    MAX_ATTEMPTS,
    Bucket,
    PermanentProviderError,
    Sleep,
    TransientProviderError,
    report_page_fetch,
)
from ingest.connectors.credentials import CredentialsUnreadable, credentials_decrypt, credentials_encrypt
from ingest.connectors.models import (
    NATURAL_KEY_FIELDS,
    Connector,
    ConnectorRun,
    RunStatus,
    StatementLine,
)

logger = logging.getLogger(__name__)

# Providers fill in a day's usage and cost for a while after it ends; buckets that closed less than this
# long ago stay behind the cursor, so the next pull fetches them again and updates their lines.
LATE_DATA_WINDOW = timedelta(hours=24)
MAX_PAGES_PER_PULL = 1000
ADVISORY_LOCK_NAMESPACE = 0x46494E4F  # "FINO": keeps our pg advisory locks apart from anyone else's


def start_of_day(*, moment: datetime) -> datetime:
    """Pulls start at midnight UTC, so buckets line up with calendar days (and months) on every pull."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def first_day_of_previous_month(*, now: datetime) -> datetime:
    first_of_this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first_of_this_month - timedelta(days=1)).replace(day=1)


def connector_create(
    *,
    kind: str,
    name: str,
    credentials: dict[str, str],
    base_url: str = "",
    pull_from: datetime | None = None,
    enabled: bool = True,
) -> Connector:
    """A new connector; without pull_from, its first pull starts on the first day of last month."""
    return Connector.objects.create(
        kind=kind,
        name=name,
        credentials_encrypted=credentials_encrypt(credentials=credentials),
        base_url=base_url.rstrip("/"),
        enabled=enabled,
        cursor=start_of_day(moment=pull_from)
        if pull_from
        else first_day_of_previous_month(now=timezone.now()),
    )


def connector_run_request(*, connector_id: int) -> ConnectorRun:
    """Queue a pull on the worker once the surrounding transaction commits; the run records its fate."""
    from ingest.connectors.tasks import pull_connector  # the tasks module imports this one

    run = ConnectorRun.objects.create(connector_id=connector_id, status=RunStatus.QUEUED)

    def enqueue() -> None:
        try:
            pull_connector.apply_async(args=(connector_id, run.pk), queue=CeleryQueue.INGEST)
        except Exception:  # the broker being down must not fail the request that asked for the pull
            logger.warning("could not queue the pull of connector %s", connector_id, exc_info=True)
            _run_finish(
                run=run,
                status=RunStatus.FAILED,
                error="the pull could not be queued (is the broker running?); the hourly pull will try again",
            )

    transaction.on_commit(enqueue)
    return run


def _merged(lines: Iterable[dict]) -> list[dict]:
    """Lines a page reports twice under one natural key are parts of the same thing: add them up."""
    by_key: dict[tuple, dict] = {}
    for line in lines:
        key = tuple(line[name] for name in NATURAL_KEY_FIELDS)
        if key not in by_key:
            by_key[key] = dict(line)
            continue
        kept = by_key[key]
        for measure in ("quantity", "amount"):
            if line[measure] is not None:
                kept[measure] = (kept[measure] or (Decimal(0) if measure == "amount" else 0)) + line[measure]
    return list(by_key.values())


def statement_lines_write(*, connector: Connector, buckets: list[Bucket], pulled_at: datetime) -> int:
    """Upsert the buckets' lines; lines of these buckets that the provider no longer reports go."""
    if not buckets:
        return 0
    dimensions = {"model": "", "project_id": "", "api_key_id": "", "workspace_id": "", "batch": False}
    dimensions |= {"service_tier": "", "context_window": "", "quantity": None, "amount": None}
    lines = _merged(
        {
            **dimensions,
            **line,
            "source": connector.source,
            "period_start": bucket.start,
            "period_end": bucket.end,
        }
        for bucket in buckets
        for line in bucket.lines
    )
    StatementLine.objects.bulk_create(
        [
            StatementLine(connector=connector, provider=connector.provider, pulled_at=pulled_at, **line)
            for line in lines
        ],
        update_conflicts=True,
        unique_fields=list(NATURAL_KEY_FIELDS),
        update_fields=["period_end", "quantity", "amount", "currency", "provider", "connector", "pulled_at"],
    )
    StatementLine.objects.filter(
        source=connector.source,
        period_start__in={bucket.start for bucket in buckets},
        pulled_at__lt=pulled_at,
    ).delete()
    return len(lines)


def _cursor_after(
    *, cursor: datetime, buckets: list[Bucket], settled_before: datetime
) -> tuple[datetime, bool]:
    """The cursor moves over settled buckets only, and stops for good at the first one still open."""
    for bucket in buckets:
        if bucket.end > settled_before:
            return cursor, True
        cursor = max(cursor, bucket.end)
    return cursor, False


def _run_finish(*, run: ConnectorRun, status: str, error: str = "") -> ConnectorRun:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    Connector.objects.filter(pk=run.connector_id).update(
        last_run_at=run.finished_at, last_status=status, last_error=error, last_rows=run.rows
    )
    return run


def _run_start(*, connector: Connector, run_id: int | None) -> ConnectorRun:
    run = ConnectorRun.objects.filter(pk=run_id, connector=connector).first() if run_id else None
    if run is None or run.finished_at is not None:  # a redelivered task gets a run of its own
        run = ConnectorRun(connector=connector)
    run.status, run.started_at = RunStatus.RUNNING, timezone.now()
    run.save()
    return run


def _try_lock(connector_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, connector_id])
        return bool(cursor.fetchone()[0])


def _unlock(connector_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, connector_id])


def connector_pull(
    *,
    connector_id: int,
    run_id: int | None = None,
    now: datetime | None = None,
    sleep: Sleep = time.sleep,
    max_attempts: int = MAX_ATTEMPTS,
) -> ConnectorRun:
    """Pull the connector's report from its cursor to now.

    Permanent provider errors (a bad key, a wrong URL) end the run as failed with the fix in its error;
    transient ones that outlast the retries are recorded too, then raised so the worker retries later.
    """
    connector = Connector.objects.get(pk=connector_id)
    run = _run_start(connector=connector, run_id=run_id)
    if not _try_lock(connector_id):
        return _run_finish(
            run=run, status=RunStatus.SKIPPED, error="another pull of this connector was running"
        )
    try:
        connector.refresh_from_db()  # the pull that held the lock before may have moved the cursor
        _pull_pages(
            connector=connector, run=run, now=now or timezone.now(), sleep=sleep, max_attempts=max_attempts
        )
    except (PermanentProviderError, CredentialsUnreadable) as error:
        return _run_finish(run=run, status=RunStatus.FAILED, error=str(error))
    except TransientProviderError as error:
        _run_finish(run=run, status=RunStatus.FAILED, error=str(error))
        raise
    except Exception as error:
        _run_finish(run=run, status=RunStatus.FAILED, error=f"unexpected {type(error).__name__}: {error}")
        raise
    finally:
        _unlock(connector_id)
    return _run_finish(run=run, status=RunStatus.SUCCEEDED)


def _pull_pages(
    *, connector: Connector, run: ConnectorRun, now: datetime, sleep: Sleep, max_attempts: int
) -> None:
    credentials = credentials_decrypt(encrypted=connector.credentials_encrypted)
    api_key = credentials.get("api_key")
    if not api_key:
        raise PermanentProviderError("the connector has no admin key — enter it in the connector settings")
    start, settled_before = connector.cursor, now - LATE_DATA_WINDOW
    if start >= now:
        return
    page_token: str | None = None
    cursor_frozen = False
    for _ in range(MAX_PAGES_PER_PULL):
        page = report_page_fetch(
            kind=connector.kind,
            base_url=connector.api_base_url,
            api_key=api_key,
            start=start,
            end=now,
            page=page_token,
            sleep=sleep,
            max_attempts=max_attempts,
        )
        with transaction.atomic():
            locked = Connector.objects.select_for_update().get(pk=connector.pk)
            written = statement_lines_write(connector=locked, buckets=page.buckets, pulled_at=run.started_at)
            if not cursor_frozen:
                new_cursor, cursor_frozen = _cursor_after(
                    cursor=locked.cursor, buckets=page.buckets, settled_before=settled_before
                )
                if new_cursor != locked.cursor:
                    Connector.objects.filter(pk=locked.pk).update(cursor=new_cursor)
            run.pages += 1
            run.rows += written
            run.save(update_fields=["pages", "rows"])
        if page.next_page is None:
            return
        if page.next_page == page_token:
            raise PermanentProviderError(
                f"the report's paging does not advance (next_page {page_token!r} again) — check the base URL"
            )
        page_token = page.next_page
    raise PermanentProviderError(
        f"the report had more than {MAX_PAGES_PER_PULL} pages in one pull; the cursor kept what was saved "
        "and the next pull continues from there"
    )
