"""Writes of the connectors: create one, request a pull, pull a provider report into statement lines.

A pull pages from the connector's cursor to now. Each page's lines and the advanced cursor are written
in one transaction, so a pull that dies half-way resumes where the last saved page ended: no gap, no
double count. Lines are upserted on their natural key, so re-pulling a bucket updates it.

Statements that no connector pulls (a FOCUS invoice file, the demo's bill) go through the same upsert
with statement_lines_replace, which leaves lines that did not change alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from finops.accounts.selectors import (
    principal_is_authenticated,
    principal_is_token,
    principal_manages_billing,
    visible_team_ids,
)
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
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
from ingest.connectors.focus import FocusRowError, focus_csv_records, focus_header_problems, focus_rows_parse
from ingest.connectors.invoice_csv import (
    PREVIEW_ROWS,
    InvoiceMappingSpec,
    InvoiceRowError,
    Preview,
    delimiter_detect,
    invoice_csv_records,
    invoice_rows_parse,
    mapping_problems,
    preview_read,
)
from ingest.connectors.models import (
    NATURAL_KEY_FIELDS,
    Connector,
    ConnectorRun,
    InvoiceImport,
    InvoiceImportStatus,
    InvoiceMapping,
    RunStatus,
    StatementLine,
)
from ingest.imports import ImportFileError, ImportProgress, ImportSummary, import_source_name
from ingest.quarantine import Principal

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


# what an upsert changes on a line that is already there: everything but its natural key
_UPSERT_FIELDS = ["period_end", "quantity", "amount", "currency", "provider", "connector", "pulled_at"]
_MEASURES = ("provider", "period_end", "quantity", "amount", "currency")
_DIMENSION_DEFAULTS = {
    "model": "",
    "token_type": "",
    "line_item": "",
    "project_id": "",
    "api_key_id": "",
    "workspace_id": "",
    "batch": False,
    "service_tier": "",
    "context_window": "",
    "quantity": None,
    "amount": None,
    "currency": "",
}


# the columns of an upsert and their SQL array types: one array per column, unnest()ed into rows
_UPSERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "text"),
    ("connector_id", "bigint"),
    ("provider", "text"),
    ("kind", "text"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
    ("model", "text"),
    ("token_type", "text"),
    ("line_item", "text"),
    ("project_id", "text"),
    ("api_key_id", "text"),
    ("workspace_id", "text"),
    ("batch", "boolean"),
    ("service_tier", "text"),
    ("context_window", "text"),
    ("quantity", "bigint"),
    ("amount", "numeric"),
    ("currency", "text"),
    ("pulled_at", "timestamptz"),
)
_UPSERT_BATCH = 10_000
_UPSERT_SQL = (
    "INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "
    "ON CONFLICT ON CONSTRAINT statement_line_natural_key DO UPDATE SET {updates}"
)


def _statement_lines_upsert(*, lines: list[dict], connector: Connector | None, pulled_at: datetime) -> None:
    """The one write of statement lines: insert, or update the line with the same natural key.

    One INSERT … SELECT FROM unnest(column arrays) … ON CONFLICT per 10,000 lines: Django's bulk_create
    spent most of an invoice import preparing each of its values one by one (bench/invoices.py, 100k
    lines on a loaded 2-core machine: 51 s with bulk_create, 29 s with this). The lines are merged by
    natural key first (_merged), so no statement touches a row twice."""
    sql = _UPSERT_SQL.format(
        table=StatementLine._meta.db_table,
        columns=", ".join(name for name, _ in _UPSERT_COLUMNS),
        arrays=", ".join(f"%s::{kind}[]" for _, kind in _UPSERT_COLUMNS),
        updates=", ".join(
            f"{name} = EXCLUDED.{name}"
            for name in (
                ("connector_id" if field_name == "connector" else field_name) for field_name in _UPSERT_FIELDS
            )
        ),
    )
    connector_id = connector.pk if connector is not None else None
    with connection.cursor() as cursor:
        for first in range(0, len(lines), _UPSERT_BATCH):
            batch = lines[first : first + _UPSERT_BATCH]
            fixed = {"connector_id": [connector_id] * len(batch), "pulled_at": [pulled_at] * len(batch)}
            arrays = [
                fixed[name]
                if name in fixed
                else [line.get(name, _DIMENSION_DEFAULTS.get(name)) for line in batch]
                for name, _ in _UPSERT_COLUMNS
            ]
            cursor.execute(sql, arrays)


@dataclass
class StatementWrite:
    """What writing a statement's lines did, line by line (rows a file repeats are one line)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def lines(self) -> int:
        return self.created + self.updated + self.unchanged


def statement_lines_replace(
    *, source: str, lines: Iterable[dict], pulled_at: datetime, remove_stale: bool = True
) -> StatementWrite:
    """Write a whole statement that is not pulled by a connector (a FOCUS file, the demo's bill).

    Each line carries its provider and period. Lines are upserted on their natural key, but a line whose
    provider, period end, quantity, amount and currency are already stored as they are is left alone
    (its pulled_at too), so writing the same statement again changes nothing. With remove_stale, lines of
    this source in the periods written that the statement no longer has are deleted.
    """
    merged = _merged({**_DIMENSION_DEFAULTS, **line, "source": source} for line in lines)
    outcome = StatementWrite()
    with transaction.atomic():
        existing = {
            tuple(stored[name] for name in NATURAL_KEY_FIELDS): stored
            for stored in StatementLine.objects.filter(source=source).values(
                "id", *NATURAL_KEY_FIELDS, *_MEASURES
            )
        }
        changed = []
        for line in merged:
            stored = existing.get(tuple(line[name] for name in NATURAL_KEY_FIELDS))
            if stored is None:
                outcome.created += 1
            elif all(stored[name] == line[name] for name in _MEASURES):
                outcome.unchanged += 1
                continue
            else:
                outcome.updated += 1
            changed.append(line)
        if changed:
            _statement_lines_upsert(lines=changed, connector=None, pulled_at=pulled_at)
        if remove_stale and merged:
            kept = {tuple(line[name] for name in NATURAL_KEY_FIELDS) for line in merged}
            periods = {line["period_start"] for line in merged}
            stale = [
                stored["id"]
                for key, stored in existing.items()
                if key not in kept and stored["period_start"] in periods
            ]
            outcome.removed, _ = StatementLine.objects.filter(id__in=stale).delete()
    return outcome


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
    _statement_lines_upsert(
        lines=[{**line, "provider": connector.provider} for line in lines],
        connector=connector,
        pulled_at=pulled_at,
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


# --- FOCUS invoices -------------------------------------------------------------------------------------


MAX_FOCUS_REJECTS_LISTED = 1000


def focus_source_name(*, file_name: str) -> str:
    return f"focus:{Path(file_name).name}"[:64]


@dataclass
class FocusImportSummary(ImportSummary):
    """ImportSummary's counts are statement lines here: accepted = lines created or updated, duplicates =
    lines already stored as they are, rejected = rows that could not be read (the first thousand listed
    in rejected_samples with their line numbers; nothing of theirs written, nothing quarantined)."""

    write: StatementWrite = field(default_factory=StatementWrite)


def focus_file_import(
    *,
    path: Path,
    file_name: str | None = None,
    source: str | None = None,
    principal: Principal = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> FocusImportSummary:
    """`finops import FILE --format focus`: a FOCUS invoice's rows as statement lines of the source
    focus:<file name>, never calls in the ledger. Rows that cannot be read are reported with their line
    number and nothing of theirs is written; the good rows are. Importing the same file again changes
    nothing. Only the local operator or an org-wide user may import a bill: its lines belong to no team.

    Rejected rows are not quarantined: the quarantine replays rows through the call writer, which a
    statement row must never reach. Fix the file and import it again instead."""
    if principal is not None and visible_team_ids(principal=principal) is not None:
        raise ImportFileError(
            "a provider bill is for the whole organisation: only org admins and finops may import it"
        )
    path = Path(path)
    file_name = file_name or path.name
    summary = FocusImportSummary(
        file_name=file_name,
        format="focus",
        # the upload page names every file's source file:<name>, the ledger's default: a bill keeps its own
        source=focus_source_name(file_name=file_name)
        if source in (None, "", import_source_name(file_name=file_name))
        else source,
        progress=ImportProgress(bytes_total=path.stat().st_size),
    )
    progress = summary.progress
    lines: list[dict] = []
    with path.open("rb") as handle:

        def text_lines() -> Iterator[str]:
            for number, raw in enumerate(handle, start=1):
                progress.bytes_done += len(raw)
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise ImportFileError(
                        f"line {number} is not UTF-8 text; save the file as UTF-8"
                    ) from None

        columns, records = focus_csv_records(text_lines())
        problems = focus_header_problems(columns=columns)
        if problems:
            raise ImportFileError(f"not a FOCUS CSV header: {'; '.join(problems)}")
        for parsed in focus_rows_parse(records):
            progress.rows_read += 1
            if isinstance(parsed, FocusRowError):
                progress.rejected += 1
                if len(summary.rejected_samples) < MAX_FOCUS_REJECTS_LISTED:
                    summary.rejected_samples.append(
                        {"position": parsed.position, "event_id": None, "errors": parsed.errors}
                    )
            else:
                lines.append(parsed)
            if on_progress and progress.rows_read % 10_000 == 0:
                on_progress(progress)
    # a rejected row may be the one that would have kept a stored line: then nothing is removed
    summary.write = statement_lines_replace(
        source=summary.source, lines=lines, pulled_at=timezone.now(), remove_stale=not progress.rejected
    )
    progress.accepted = summary.write.created + summary.write.updated
    progress.duplicates = summary.write.unchanged
    if on_progress:
        on_progress(progress)
    return summary


# --- a provider's own CSV export, through a saved column mapping ---------------------------------------


def invoice_source_name(*, file_name: str) -> str:
    return f"invoice:{Path(file_name).name}"[:64]


def invoice_mapping_snapshot(mapping: InvoiceMapping) -> dict:
    return {"name": mapping.name, "header": mapping.header, "spec": mapping.spec}


def _refuse_unless_billing(principal: Principal) -> None:
    if principal is not None and not principal_manages_billing(principal):
        raise InvoiceMappingRefused("only the admin and finops roles make and change invoice mappings")


class InvoiceMappingRefused(PermissionError):
    pass


@transaction.atomic
def invoice_mapping_save(
    *, principal: Principal, name: str, header: list[str], spec: InvoiceMappingSpec
) -> InvoiceMapping:
    """Save the mapping under its name: a new one, or the one of that name changed (audited either way).
    principal None is the local operator."""
    _refuse_unless_billing(principal)
    name = " ".join(name.split())[:128]
    if not name:
        raise ValueError("give the mapping a name")
    problems = mapping_problems(spec=spec, header=header)
    if problems:
        raise ValueError("; ".join(problems))
    mapping = InvoiceMapping.objects.select_for_update().filter(name=name).first()
    before = invoice_mapping_snapshot(mapping) if mapping else None
    if mapping is None:
        mapping = InvoiceMapping(
            name=name, created_by=principal if principal_is_authenticated(principal) else None
        )
    mapping.header, mapping.spec = list(header), spec.as_dict()
    mapping.save()
    after = invoice_mapping_snapshot(mapping)
    if after != before:
        audit_record(
            principal=principal,
            team_id=None,
            object_type="invoice_mapping",
            object_id=mapping.pk,
            action=AuditAction.CREATE if before is None else AuditAction.UPDATE,
            before=before,
            after=after,
        )
    return mapping


@transaction.atomic
def invoice_mapping_delete(*, principal: Principal, mapping: InvoiceMapping) -> None:
    _refuse_unless_billing(principal)
    audit_record(
        principal=principal,
        team_id=None,
        object_type="invoice_mapping",
        object_id=mapping.pk,
        action=AuditAction.DELETE,
        before=invoice_mapping_snapshot(mapping),
        after=None,
    )
    mapping.delete()


def _decoded_lines(handle, progress: ImportProgress | None = None) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        if progress is not None:
            progress.bytes_done += len(raw)
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ImportFileError(f"line {number} is not UTF-8 text; save the file as UTF-8") from None


def invoice_file_preview(*, path: Path, delimiter: str | None = None, limit: int = PREVIEW_ROWS) -> Preview:
    """The first rows of an uploaded file, cut at the delimiter given or else the one its header uses."""
    if delimiter is None:
        with Path(path).open("rb") as handle:
            first = handle.readline()
        try:
            delimiter = delimiter_detect(first.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ImportFileError("line 1 is not UTF-8 text; save the file as UTF-8") from None
    with Path(path).open("rb") as handle:
        preview = preview_read(_decoded_lines(handle), delimiter=delimiter, limit=limit)
    if not preview.header:
        raise ImportFileError("the file is empty: a CSV starts with a header line naming its columns")
    return preview


@dataclass
class InvoiceImportSummary(FocusImportSummary):
    """As FocusImportSummary: counts of statement lines; rejected_samples lists every skipped row (up to
    a thousand) with its line number and each bad column's reason. totals: the amount of the rows read
    well, per provider and currency, exact."""

    mapping: str = ""
    totals: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "file_name": self.file_name,
            "format": self.format,
            "mapping": self.mapping,
            "source": self.source,
            "rows_read": self.rows_read,
            "lines_created": self.write.created,
            "lines_updated": self.write.updated,
            "lines_unchanged": self.write.unchanged,
            "lines_removed": self.write.removed,
            "skipped": self.rejected,
            "skipped_rows": [
                {
                    "line": int(sample["position"].split()[-1]),
                    "errors": sample["errors"],
                    "row": sample["row"],
                }
                for sample in self.rejected_samples
            ],
            "totals": [
                {"provider": provider, "currency": currency, "amount": format(amount.normalize(), "f")}
                for (provider, currency), amount in sorted(self.totals.items())
            ],
        }


def invoice_file_import(
    *,
    path: Path,
    mapping: InvoiceMapping,
    file_name: str | None = None,
    principal: Principal = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> InvoiceImportSummary:
    """A provider's CSV export read through a saved mapping, as statement lines of the source
    invoice:<file name> (the invoice side of a bill). As focus_file_import: bad rows are reported with
    their line number and reasons and nothing of theirs is written, the good rows are; importing the
    same file again changes nothing; a corrected file replaces the lines of the periods it covers."""
    if principal is not None and visible_team_ids(principal=principal) is not None:
        raise ImportFileError(
            "a provider bill is for the whole organisation: only org admins and finops may import it"
        )
    path = Path(path)
    file_name = file_name or path.name
    spec = InvoiceMappingSpec.from_dict(mapping.spec)
    summary = InvoiceImportSummary(
        file_name=file_name,
        format="invoice-csv",
        source=invoice_source_name(file_name=file_name),
        progress=ImportProgress(bytes_total=path.stat().st_size),
        mapping=mapping.name,
    )
    progress = summary.progress
    lines: list[dict] = []
    with path.open("rb") as handle:
        header, records = invoice_csv_records(_decoded_lines(handle, progress), delimiter=spec.delimiter)
        problems = mapping_problems(spec=spec, header=header)
        if problems:
            raise ImportFileError(
                f"the mapping “{mapping.name}” does not fit this file's header: {'; '.join(problems)}"
            )
        for parsed in invoice_rows_parse(records, spec=spec):
            progress.rows_read += 1
            if isinstance(parsed, InvoiceRowError):
                progress.rejected += 1
                if len(summary.rejected_samples) < MAX_FOCUS_REJECTS_LISTED:
                    summary.rejected_samples.append(
                        {
                            "position": parsed.position,
                            "event_id": None,
                            "errors": parsed.errors,
                            "row": parsed.row,
                        }
                    )
            else:
                lines.append(parsed)
                key = (parsed["provider"], parsed["currency"])
                summary.totals[key] = summary.totals.get(key, Decimal(0)) + parsed["amount"]
            if on_progress and progress.rows_read % 10_000 == 0:
                on_progress(progress)
    summary.write = statement_lines_replace(
        source=summary.source, lines=lines, pulled_at=timezone.now(), remove_stale=not progress.rejected
    )
    progress.accepted = summary.write.created + summary.write.updated
    progress.duplicates = summary.write.unchanged
    if on_progress:
        on_progress(progress)
    return summary


def invoice_upload_store(
    *, principal: Principal, file_name: str, chunks: Iterable[bytes], folder: Path
) -> InvoiceImport:
    """Keep an uploaded invoice on the server until it is mapped and imported."""
    file_name = Path(file_name).name
    stored = folder / f"{uuid.uuid4().hex}-{get_valid_filename(file_name) or 'invoice.csv'}"
    with stored.open("wb") as destination:
        for chunk in chunks:
            destination.write(chunk)
    return InvoiceImport.objects.create(
        file_name=file_name[:255],
        stored_path=str(stored),
        source=invoice_source_name(file_name=file_name),
        created_by=principal
        if principal_is_authenticated(principal) and not principal_is_token(principal)
        else None,
    )


def invoice_import_run(
    *, invoice_import: InvoiceImport, mapping: InvoiceMapping, principal: Principal
) -> InvoiceImport:
    """Import an uploaded file with a mapping, keeping what it did on the InvoiceImport (the result page)."""
    try:
        summary = invoice_file_import(
            path=Path(invoice_import.stored_path),
            mapping=mapping,
            file_name=invoice_import.file_name,
            principal=principal,
        )
    except (ImportFileError, OSError) as error:
        invoice_import.status, invoice_import.error, invoice_import.outcome = (
            InvoiceImportStatus.FAILED,
            str(error),
            {},
        )
    else:
        invoice_import.status, invoice_import.error = InvoiceImportStatus.DONE, ""
        invoice_import.outcome = summary.as_json()
    invoice_import.mapping, invoice_import.imported_at = mapping, timezone.now()
    invoice_import.save(update_fields=["status", "error", "outcome", "mapping", "imported_at"])
    return invoice_import
