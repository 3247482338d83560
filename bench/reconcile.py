"""Reconciliation of a provider's month at 10M calls (issue 10, "Performance"): one command, prints every
figure.

    .venv/bin/python bench/reconcile.py [--calls 10000000] [--repeats 20] [--keep | --reuse NAME]

A fresh database holds `--calls` calls in last month (bench/ledger.py's loader: 50 agents in 5 teams,
spread evenly from last month's first day to now, so the month reconciled has `--calls` of them, plus
their daily rollups) and the provider's cost statement for that month, made by SQL from the same rollups
as a provider would report it (per day, model under its dated name, token type; in the agents'
workspace), with differences reconciliation must name: another workspace's usage on the 10th, a day
not pulled (the 20th), and the output rate cut by 10% from the 15th; and an invoice line.

It times `finops.bills.reconcile.reconciliation` plus its JSON (what GET /api/v1/reconciliation
answers) `--repeats` times after two unmeasured runs, prints p50 and p95 (goal: under 1 s), the lines
and causes found, and the sequential and index scans of the calls table during the timed runs, from
pg_stat_user_tables (goal: none: reconciliation reads rollups and statement lines only).

Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the database is created
for the run and dropped at the end (--keep keeps it, --reuse NAME runs on a kept one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ledger import ledger_ready, say, table_scans
from scratch import run_database

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SOURCE = "anthropic_cost:bench"

STATEMENT_SQL = """
INSERT INTO connectors_statementline (source, provider, kind, period_start, period_end, model, token_type,
    line_item, project_id, api_key_id, workspace_id, batch, service_tier, context_window, quantity, amount,
    currency, pulled_at)
SELECT %(source)s, 'anthropic', 'cost', day::timestamp AT TIME ZONE 'UTC',
    (day + 1)::timestamp AT TIME ZONE 'UTC', 'claude-sonnet-4-5-20250929', token_type,
    'Claude Sonnet 4.5 ' || token_type, '', '', 'wrkspc_agents', false, 'standard', '0-200k', tokens,
    CASE WHEN token_type = 'output' AND day >= %(rate_cut)s THEN usd * 0.9 ELSE usd END, 'USD', now()
FROM (
    SELECT day, unnest(ARRAY['uncached_input', 'cache_read', 'cache_write_5m', 'output']) AS token_type,
        unnest(ARRAY[sum(uncached_input), sum(cache_read), sum(cache_write_5m), sum(output)]) AS tokens,
        unnest(ARRAY[sum(cost_uncached_input_usd), sum(cost_cache_read_usd), sum(cost_cache_write_5m_usd),
            sum(cost_output_usd)]) AS usd
    FROM ledger_dailyrollup
    WHERE provider = 'anthropic' AND day >= %(first)s AND day < %(next)s AND day <> %(not_pulled)s
    GROUP BY day
) AS cells
WHERE tokens > 0
UNION ALL
-- a notebook workspace that sends no telemetry: 3%% more uncached input on the 10th
SELECT %(source)s, 'anthropic', 'cost', day::timestamp AT TIME ZONE 'UTC',
    (day + 1)::timestamp AT TIME ZONE 'UTC', 'claude-sonnet-4-5-20250929', 'uncached_input',
    'Claude Sonnet 4.5 uncached_input', '', '', 'wrkspc_notebooks', false, 'standard', '0-200k',
    round(sum(uncached_input) * 0.03), sum(cost_uncached_input_usd) * 0.03, 'USD', now()
FROM ledger_dailyrollup WHERE provider = 'anthropic' AND day = %(unseen)s GROUP BY day
UNION ALL
SELECT 'focus:bench-invoice.csv', 'anthropic', 'cost', %(first)s::timestamp AT TIME ZONE 'UTC',
    %(next)s::timestamp AT TIME ZONE 'UTC', '', '', 'Claude API usage', '', '', '', false, '', '', NULL,
    round(sum(cost_usd), 2), 'USD', now()
FROM ledger_dailyrollup WHERE provider = 'anthropic' AND day >= %(first)s AND day < %(next)s
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def last_month(now: datetime) -> date:
    first_of_this = date(now.year, now.month, 1)
    previous = first_of_this - timedelta(days=1)
    return date(previous.year, previous.month, 1)


def statement_create(month: date) -> int:
    from django.db import connection

    following = (month + timedelta(days=32)).replace(day=1)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM connectors_statementline WHERE source IN (%s, 'focus:bench-invoice.csv')", [SOURCE]
        )
        cursor.execute(
            STATEMENT_SQL,
            {
                "source": SOURCE,
                "first": month,
                "next": following,
                "not_pulled": month.replace(day=20),
                "unseen": month.replace(day=10),
                "rate_cut": month.replace(day=15),
            },
        )
        cursor.execute("SELECT count(*) FROM connectors_statementline")
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000_000, help="calls in the month reconciled")
    parser.add_argument("--repeats", type=int, default=20, help="timed reconciliations")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME", help="run on a database kept by --keep")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_reconcile", reuse=args.reuse)
    try:
        started = datetime.now(UTC)
        month = last_month(started)
        month_days = ((month + timedelta(days=32)).replace(day=1) - month).days
        span_days = (
            started - datetime.combine(month, datetime.min.time(), tzinfo=UTC)
        ).total_seconds() / 86400
        total_calls = round(args.calls * span_days / month_days)
        now = ledger_ready(new=scratch is not None, calls=total_calls, span_days=span_days)
        month = last_month(now)
        from django.db import connection

        from finops.bills.api import reconciliation_json
        from finops.bills.reconcile import reconciliation

        lines = statement_create(month)
        start, end = datetime.combine(month, datetime.min.time(), tzinfo=UTC), None
        end = datetime.combine((month + timedelta(days=32)).replace(day=1), datetime.min.time(), tzinfo=UTC)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM ledger_call WHERE timestamp >= %s AND timestamp < %s", [start, end]
            )
            month_calls = cursor.fetchone()[0]
            cursor.execute(
                "SELECT count(*) FROM ledger_dailyrollup WHERE day >= %s AND day < %s", [start, end]
            )
            rollups = cursor.fetchone()[0]
            cursor.execute("VACUUM ANALYZE")
        say(
            f"== {month:%Y-%m}: {month_calls:,} calls, {rollups:,} daily rollup rows, {lines:,} statement lines"
        )

        for _ in range(2):  # unmeasured: the first makes the lines' rows, both warm the caches
            body = reconciliation_json(reconciliation(provider="anthropic", month=month))
        before = table_scans(["ledger_call"])
        seconds = []
        for _ in range(args.repeats):
            clock = time.perf_counter()
            body = reconciliation_json(reconciliation(provider="anthropic", month=month))
            seconds.append(time.perf_counter() - clock)
        after = table_scans(["ledger_call"])
        call_seq, call_idx = (
            (after["ledger_call"][0] - before["ledger_call"][0]),
            (after["ledger_call"][1] - before["ledger_call"][1]),
        )

        statuses = Counter(line["status"] for line in body["lines"])
        causes = Counter(line["cause"] for line in body["lines"] if line["status"] != "matched")
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        say("")
        say(f"calls in {month:%Y-%m}: {month_calls:,}; load: {load}")
        say(
            f"telemetry ${body['telemetry_usd']}, statement ${body['statement_usd']} ({body['statement_basis']}), "
            f"invoice ${body['invoice_usd']}, variance ${body['variance_usd']} ({body['variance_percent']:.3f}%)"
        )
        say(f"lines {len(body['lines'])}: {dict(statuses)}; causes of the unmatched: {dict(causes)}")
        say(f"unmatched dollars with a cause ${body['with_cause_usd']}, without ${body['without_cause_usd']}")
        say(
            f"reconciliation ({args.repeats} runs): p50 {statistics.median(seconds) * 1000:.0f} ms, "
            f"p95 {percentile(seconds, 0.95) * 1000:.0f} ms (goal: under 1000 ms)"
        )
        say(f"calls table during the timed runs: {call_seq} sequential, {call_idx} index scans (goal: 0, 0)")
    finally:
        from django.db import connections

        connections.close_all()
        if scratch and args.keep:
            say(f"== kept database {scratch.name} (bench/reconcile.py --reuse {scratch.name})")
        elif scratch:
            scratch.drop()


if __name__ == "__main__":
    main()
