"""`finops import FILE [--format …]`: import a file of usage records, with a progress bar on stderr."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlencode

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from ingest.imports import (
    BATCH_SIZE,
    FORMATS,
    ImportFileError,
    ImportFormatNotSupported,
    ImportProgress,
    file_import,
)

_UNITS = ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB"))


def _size(count: int) -> str:
    for factor, unit in _UNITS:
        if count >= factor:
            return f"{count / factor:.1f} {unit}"
    return f"{count} B"


class ProgressBar:
    """Bytes read of the file's total, with rows per second; redrawn at most five times a second."""

    WIDTH = 30
    MIN_INTERVAL_S = 0.2

    def __init__(self, *, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.last_drawn = 0.0

    def update(self, progress: ImportProgress, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_drawn < self.MIN_INTERVAL_S:
            return
        self.last_drawn = now
        fraction = progress.bytes_done / progress.bytes_total if progress.bytes_total else 1.0
        filled = int(self.WIDTH * fraction)
        rate = progress.rows_read / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} "
            f"{_size(progress.bytes_done)}/{_size(progress.bytes_total)}  {progress.rows_read:,} rows "
            f"{rate:,.0f} rows/s"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "Import a file of usage records (canonical JSONL or CSV, LiteLLM logs, OTLP/JSON); see SPEC.md."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", dest="file_format", choices=FORMATS, default="auto")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
        parser.add_argument("--source", help="quarantine source name for rejected rows (default file:<name>)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        parser.add_argument(
            "--mapping",
            help="the saved invoice column mapping to read a provider's CSV export with (--format invoice-csv)",
        )

    def handle(self, *args, file, file_format, batch_size, source, no_progress, mapping, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        bar = None if no_progress else ProgressBar(stream=sys.stderr, label=file.name)
        started = time.monotonic()
        try:
            summary = file_import(
                path=file,
                file_format=file_format,
                principal=None,
                source=source,
                batch_size=batch_size,
                on_progress=bar.update if bar else None,
                mapping=mapping,
            )
        except ImportFormatNotSupported as error:
            raise CommandError(str(error), returncode=2) from None
        except ImportFileError as error:
            raise CommandError(f"{file.name}: {error}") from None
        if bar:
            bar.update(summary.progress, final=True)
        write = self.stdout.write
        if summary.format in ("focus", "invoice-csv"):
            self._focus_summary(summary)
            return
        elapsed = time.monotonic() - started
        write(
            f"{summary.file_name} ({summary.format}): {summary.rows_read:,} rows read in {elapsed:.1f} s "
            f"({summary.rows_read / max(elapsed, 1e-9):,.0f} rows/s)"
        )
        write(f"  accepted    {summary.accepted:>10,}")
        write(f"  duplicates  {summary.duplicates:>10,}")
        write(f"  rejected    {summary.rejected:>10,}")
        if summary.rejected:
            query = urlencode({"source": summary.source})
            write(f'Rejected rows are quarantined with source "{summary.source}". List them:')
            write(f"  page: {reverse('ingest:quarantine')}?{query}  (on the finops web server)")
            write(f"  API:  GET /api/v1/quarantine?{query}")
            write("First rejected rows:")
            for rejected in summary.rejected_samples[:5]:
                reasons = "; ".join(
                    f"{name}: {' '.join(messages)}" for name, messages in (rejected["errors"] or {}).items()
                )
                write(f"  {rejected['position']}: {reasons}")

    def _focus_summary(self, summary) -> None:
        """An invoice (FOCUS, or a provider's export through a mapping) becomes statement lines (rows of
        one line are added up), not calls."""
        write, lines = self.stdout.write, summary.write
        through = f", mapping “{summary.mapping}”" if getattr(summary, "mapping", "") else ""
        write(
            f"{summary.file_name} ({summary.format}{through}): {summary.rows_read:,} rows read → statement "
            f'lines of "{summary.source}"'
        )
        write(
            f"  accepted    {summary.accepted:>10,}  lines new or changed ({lines.created:,} new, {lines.updated:,} changed)"
        )
        write(f"  unchanged   {lines.unchanged:>10,}  lines already stored as they are")
        if lines.removed:
            write(f"  removed     {lines.removed:>10,}  lines of these periods the file no longer has")
        write(f"  rejected    {summary.rejected:>10,}  rows")
        for (provider, currency), amount in sorted(getattr(summary, "totals", {}).items()):
            write(
                f"  total       {format(amount.normalize(), 'f'):>10}  {currency} of {provider} (rows read well)"
            )
        if summary.rejected:
            write(
                "Rejected rows were not written (and are not quarantined: fix the file and import it again):"
            )
            shown = 50
            for rejected in summary.rejected_samples[:shown]:
                reasons = "; ".join(
                    f"{name}: {' '.join(messages)}" for name, messages in rejected["errors"].items()
                )
                write(f"  {rejected['position']}: {reasons}")
            if summary.rejected > shown:
                write(f"  … and {summary.rejected - shown:,} more")
