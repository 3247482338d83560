"""Re-pricing a month of calls after a negotiated discount is added (issue 10, point 5): one command,
prints the figures.

    .venv/bin/python bench/reprice.py [--calls 10000000] [--sample 5000] [--keep | --reuse NAME]

A fresh database holds last month's traffic (bench/ledger.py's loader, as bench/pages.py uses it: 50
agents in 5 teams, all of it in the one open month). A discount on the calls' provider from the month's
first instant is saved as finops saves one (audited, a run queued), and the run is carried out here, in
this process, as the worker would (finops.pricing.reprice.reprice_run_execute). Printed: calls re-priced,
seconds, calls/s (goal: >= 50,000 at 10M calls in a month), and the check: a random sample of calls
priced one by one by PriceBook.price (the single-call reference) equal their stored cost, and the
month's daily rollups equal the sum of its calls. Each run on a kept database (--reuse) saves a
different discount, so every call's cost changes again.

Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the database is created
for the run and dropped at the end (--keep keeps it, --reuse NAME runs on a kept one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ledger import ledger_ready, say
from scratch import run_database

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GOAL_CALLS_PER_SECOND = 50_000


def last_month() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    end = today.replace(day=1)
    return (end - timedelta(days=1)).replace(day=1), end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=5000, help="calls checked against the reference")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME", help="run on a database kept by --keep")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_reprice", reuse=args.reuse)
    try:
        first, end = last_month()
        ledger_ready(
            new=scratch is not None,
            calls=args.calls,
            span_days=(end - first).days,
            end=datetime.combine(end, datetime.min.time(), tzinfo=UTC),
        )
        from django.db import connection

        from finops.ledger.tokens import TOKEN_TYPES
        from finops.pricing.models import NegotiatedDiscount
        from finops.pricing.prices import discount_create, discount_delete
        from finops.pricing.reprice import reprice_run_execute
        from finops.pricing.services import PriceBook

        start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        finish = datetime.combine(end, datetime.min.time(), tzinfo=UTC)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(sum(cost_usd), 0) FROM ledger_call WHERE timestamp >= %s "
                "AND timestamp < %s",
                [start, finish],
            )
            calls, cost_before = cursor.fetchone()
        earlier = list(NegotiatedDiscount.objects.all())
        percent = (
            Decimal("12.5") if not any(d.percent == Decimal("12.5") for d in earlier) else Decimal("7.25")
        )
        for discount in earlier:  # a kept database: the last run's discount goes (its run is not timed)
            reprice_run_execute(run_id=discount_delete(principal=None, discount=discount).pk)
            cost_before = None
        say(f"== {calls:,} calls in {first:%Y-%m} (open); adding {percent}% off anthropic from {first}")
        _, run = discount_create(principal=None, provider="anthropic", percent=percent, effective_from=start)
        clock = time.perf_counter()
        run = reprice_run_execute(run_id=run.pk)
        seconds = time.perf_counter() - clock
        say(
            f"   run {run.pk}: {run.status}, months {run.months_repriced}, {run.calls_repriced:,} calls changed"
        )

        say(f"== check: {args.sample:,} random calls priced one by one (PriceBook.price)")
        book = PriceBook.load()
        columns = ", ".join(["provider", "model", "timestamp", "batch", "cost_usd", *TOKEN_TYPES])
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM ledger_call WHERE timestamp >= %s AND timestamp < %s "
                f"ORDER BY random() LIMIT %s",
                [start, finish, args.sample],
            )
            sample = cursor.fetchall()
            cursor.execute(
                "SELECT coalesce(sum(cost_usd), 0) FROM ledger_call WHERE timestamp >= %s AND timestamp < %s",
                [start, finish],
            )
            (calls_total,) = cursor.fetchone()
            type_sum = " + ".join(f"cost_{token_type}_usd" for token_type in TOKEN_TYPES)
            cursor.execute(
                f"SELECT coalesce(sum(cost_usd), 0), coalesce(sum({type_sum}), 0) FROM ledger_dailyrollup "
                "WHERE day >= %s AND day < %s",
                [first, end],
            )
            rollup_total, rollup_type_total = cursor.fetchone()
        mismatches = 0
        for provider, model, timestamp, batch, cost, *tokens in sample:
            reference = book.price(
                provider=provider,
                model=model,
                tokens=dict(zip(TOKEN_TYPES, tokens, strict=True)),
                at=timestamp,
                batch=batch,
            )
            if reference.total_usd != cost:
                mismatches += 1
                if mismatches <= 5:
                    say(
                        f"   MISMATCH {provider}/{model} at {timestamp}: stored {cost}, reference {reference.total_usd}"
                    )
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        rate = run.calls_scanned / seconds if seconds else float("inf")
        say("")
        say(f"calls in the month {calls:,}; load: {load}")
        say(
            f"re-priced            {run.calls_scanned:,} calls ({run.calls_repriced:,} changed) in {seconds:.1f} s"
        )
        say(f"calls/s              {rate:,.0f}  (goal >= {GOAL_CALLS_PER_SECOND:,} at 10M calls in a month)")
        if cost_before is not None:
            say(f"month's cost         ${cost_before:,.6f} -> ${calls_total:,.6f} ({percent}% off)")
        say(f"sample = reference   {len(sample) - mismatches:,} of {len(sample):,} calls identical")
        say(f"rollups = calls      {rollup_total == calls_total == rollup_type_total} (${rollup_total:,.6f})")
    finally:
        from django.db import connections

        connections.close_all()
        if scratch and args.keep:
            say(f"== kept database {scratch.name} (bench/reprice.py --reuse {scratch.name})")
        elif scratch:
            scratch.drop()


if __name__ == "__main__":
    main()
