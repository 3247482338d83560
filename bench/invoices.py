"""Invoice CSV import benchmark (issue 10, invoices in): one command, prints its numbers.

    .venv/bin/python bench/invoices.py [--rows 100000]

An Anthropic-console-like cost export of --rows rows (a month of days × models × token types ×
workspaces × API keys) is written to bench/out, read through a saved column mapping into statement
lines, then imported again (every line unchanged). Prints rows per second of the parser alone and of
each import, so the synchronous page import (the page and POST /api/v1/invoices import in the request)
can be judged against real invoice sizes. Uses DATABASE_URL if set, else the embedded PostgreSQL under
bench/out/data; the database is created for the run and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from scratch import run_database

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"]
TOKEN_TYPES = ["input_no_cache", "input_cache_read", "input_cache_write_5m", "input_cache_write_1h", "output"]
HEADER = "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,list_price_usd"


def say(text: str) -> None:
    print(text, flush=True)


def export_write(path: Path, *, rows: int) -> None:
    per_day = len(MODELS) * len(TOKEN_TYPES)
    keys = max(1, rows // (30 * per_day))
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER + "\n")
        while written < rows:
            day = written // (per_day * keys) % 30 + 1
            key = written // per_day % keys
            model = MODELS[written // len(TOKEN_TYPES) % len(MODELS)]
            token_type = TOKEN_TYPES[written % len(TOKEN_TYPES)]
            cost = f"{(written % 9973) / 1000:.6f}"
            handle.write(
                f"2026-11-{day:02d},{model},ws-{key % 7},key-{key},standard,≤ 200k,{token_type},{cost},{cost}\n"
            )
            written += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_invoices", reuse=None)
    try:
        say(f"== database {scratch.name}; migrating")
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], cwd=ROOT, check=True)
        import django

        django.setup()
        from ingest.connectors.invoice_csv import InvoiceMappingSpec, invoice_csv_records, invoice_rows_parse
        from ingest.connectors.models import StatementLine
        from ingest.connectors.services import invoice_file_import, invoice_mapping_save

        path = OUT / "claude_api_cost_bench.csv"
        export_write(path, rows=args.rows)
        say(f"== {args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        spec = InvoiceMappingSpec(
            columns={
                "period_start": "usage_date_utc",
                "amount": "cost_usd",
                "model": "model",
                "token_type": "token_type",
                "workspace_id": "workspace",
                "api_key_id": "api_key",
                "service_tier": "usage_type",
                "context_window": "context_window",
            },
            currency="USD",
            provider="anthropic",
            date_format="iso",
        )
        mapping = invoice_mapping_save(principal=None, name="bench", header=HEADER.split(","), spec=spec)

        started = time.perf_counter()
        with path.open(encoding="utf-8") as handle:
            _, records = invoice_csv_records(handle, delimiter=",")
            parsed = sum(1 for _ in invoice_rows_parse(records, spec=spec))
        elapsed = time.perf_counter() - started
        say(f"parse only:      {elapsed:6.2f} s  {parsed / elapsed:10,.0f} rows/s")
        for label in ("first import:", "again (same):"):
            started = time.perf_counter()
            summary = invoice_file_import(path=path, mapping=mapping)
            elapsed = time.perf_counter() - started
            say(
                f"{label:16} {elapsed:6.2f} s  {summary.rows_read / elapsed:10,.0f} rows/s  "
                f"({summary.write.created:,} new, {summary.write.unchanged:,} unchanged, "
                f"{summary.rejected} skipped)"
            )
        say(f"lines stored:    {StatementLine.objects.count():,}")
    finally:
        from django.db import connections

        connections.close_all()
        scratch.drop()


if __name__ == "__main__":
    main()
