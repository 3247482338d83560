"""Month close, late-event adjustments and the chargeback over a year of daily rollups (issue 10): one
command, prints every figure.

    .venv/bin/python bench/bills.py [--agents 500] [--models 6] [--months 12]

Bills reads the per-day rollups, never the calls, so the bench writes only those, by SQL: `--agents`
agents in 10 teams, each calling `--models` models of two providers every day of `--months` months
ending last month (agents × models × days rows a month), a FOCUS invoice of one provider and a cost
statement of the other per month. Then it measures:

- closing each month (the snapshot INSERT ... SELECT, the frozen bases, the audit) one after another;
- the beat job (late_adjustments_materialise) with every month closed and nothing late, then after a
  late call's rollup change on one day of each closed month;
- the chargeback (the API's and the page's reader) of a closed month and of the open current month.

Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the database is created for
the run and dropped at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from ledger import say
from scratch import run_database

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TEAMS = 10

ROLLUPS_SQL = """
INSERT INTO ledger_dailyrollup (day, team_id, agent_id, provider, model, calls, unpriced_calls, batch_calls,
    calls_not_in_task, cost_usd, cost_not_in_task_usd, uncached_input, cache_read, cache_write_5m,
    cache_write_1h, output, reasoning, cost_uncached_input_usd, cost_cache_read_usd, cost_cache_write_5m_usd,
    cost_cache_write_1h_usd, cost_output_usd, cost_reasoning_usd)
SELECT day, agent.team_id, agent.id, CASE WHEN m %% 2 = 0 THEN 'anthropic' ELSE 'openai' END, 'model-' || m,
    100, 0, 0, 0,
    (1000 + agent.id %% 97 + m) * 3 / 1e6 * 100 + (200 + m) * 15 / 1e6 * 100, 0,
    (1000 + agent.id %% 97 + m) * 100, 0, 0, 0, (200 + m) * 100, 0,
    (1000 + agent.id %% 97 + m) * 3 / 1e6 * 100, 0, 0, 0, (200 + m) * 15 / 1e6 * 100, 0
FROM ledger_agent agent, generate_series(%(first)s::date, %(last)s::date, '1 day') AS day,
    generate_series(0, %(models)s - 1) AS m
"""


def world_create(*, agents: int, models: int, months: list[date], now: datetime) -> int:
    from django.db import connection

    from finops.accounts.models import Team
    from finops.bills.months import month_next
    from finops.ledger.models import Agent
    from ingest.connectors.models import StatementLine

    teams = [Team.objects.create(slug=f"team-{t}", name=f"Team {t}") for t in range(TEAMS)]
    Agent.objects.bulk_create(Agent(team=teams[a % TEAMS], name=f"agent-{a:03d}") for a in range(agents))
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute(
            ROLLUPS_SQL,
            {
                "first": months[0],
                "last": month_next(months[-1]),
                "models": models,
            },  # and the current month's first day
        )
        rows = cursor.rowcount
    lines = []
    for month in months:
        start = datetime(month.year, month.month, 1, tzinfo=UTC)
        for provider, source in (("anthropic", "focus:invoice.csv"), ("openai", "openai_costs:1")):
            for m in range(models):
                lines.append(
                    StatementLine(
                        provider=provider,
                        kind="cost",
                        source=source,
                        period_start=start,
                        period_end=start,
                        model=f"model-{m}",
                        token_type="output",  # noqa: S106 (a token type, not a secret)
                        line_item=f"model-{m}",
                        amount=1000 + m,
                        currency="usd",
                        pulled_at=now,
                    )
                )
            lines.append(
                StatementLine(
                    provider=provider,
                    kind="cost",
                    source=source,
                    period_start=start,
                    period_end=start,
                    model="",
                    line_item="support plan",
                    amount=99,
                    currency="usd",
                    pulled_at=now,
                )
            )
    StatementLine.objects.bulk_create(lines)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return rows


def timed(function, *args, **kwargs):
    from django.db import connection, reset_queries

    reset_queries()
    clock = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - clock, len(connection.queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--reads", type=int, default=5, help="chargeback reads measured (median)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_bills", reuse=None)
    try:
        import subprocess

        import django

        say("== migrating")
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], cwd=ROOT, check=True)
        django.setup()
        from django.conf import settings
        from django.db import connection

        from finops.accounts.models import OrgRole, User
        from finops.bills.adjustments import late_adjustments_materialise
        from finops.bills.chargeback import chargeback_for_month
        from finops.bills.closing import month_close
        from finops.bills.models import Adjustment
        from finops.bills.months import month_next, month_of

        settings.DEBUG = True  # count queries
        now = datetime.now(UTC)
        current = month_of(now)
        months = []
        month = current
        for _ in range(args.months):
            month = month_of(date.fromordinal(month.toordinal() - 1))
            months.insert(0, month)
        clock = time.monotonic()
        rows = world_create(agents=args.agents, models=args.models, months=months, now=now)
        per_month = rows // (len(months) + 1)
        say(f"== {rows:,} daily rollups (~{per_month:,} a month) in {time.monotonic() - clock:.0f} s")
        user = User.objects.create(username="bench-finops", org_role=OrgRole.FINOPS)

        closes = []
        for month in months:
            change, elapsed, queries = timed(month_close, principal=user, month=month, reason="bench")
            closes.append(elapsed)
            say(
                f"   closed {month:%Y-%m}: {change.snapshot_rows:,} rows in {elapsed * 1000:.0f} ms, {queries} queries"
            )

        _, quiet, quiet_queries = timed(late_adjustments_materialise)
        with connection.cursor() as cursor:  # a late call on the 15th of every closed month
            cursor.execute(
                "UPDATE ledger_dailyrollup SET cost_usd = cost_usd + 0.5, calls = calls + 1 "
                "WHERE extract(day FROM day) = 15 AND agent_id = (SELECT min(id) FROM ledger_agent) AND model = 'model-0'"
            )
        written, late, late_queries = timed(late_adjustments_materialise)
        _, again, _ = timed(late_adjustments_materialise)

        closed_reads, open_reads = [], []
        for _ in range(args.reads):
            closed_cb, elapsed, closed_queries = timed(chargeback_for_month, month=months[-1])
            closed_reads.append(elapsed)
            open_cb, elapsed, open_queries = timed(chargeback_for_month, month=current)
            open_reads.append(elapsed)
        assert closed_cb.total_usd == sum(charge.basis.total_usd for charge in closed_cb.providers)

        say("")
        say(
            f"daily rollups                          {rows:>12,}   ({args.agents} agents x {args.models} models x days)"
        )
        say(
            f"close a month (median of {len(closes)})          ms  {statistics.median(closes) * 1000:>10.0f}   max {max(closes) * 1000:.0f} ms"
        )
        say(
            f"late-event job, nothing late            ms  {quiet * 1000:>10.0f}   {quiet_queries} queries, {len(months)} closed months"
        )
        say(
            f"late-event job, a late day in each      ms  {late * 1000:>10.0f}   {late_queries} queries, {written} rows written"
        )
        say(
            f"late-event job, run again               ms  {again * 1000:>10.0f}   ({Adjustment.objects.count()} adjustments, unchanged)"
        )
        say(
            f"chargeback of a closed month (median)   ms  {statistics.median(closed_reads) * 1000:>10.0f}   {closed_queries} queries, {len(closed_cb.rows):,} rows"
        )
        say(
            f"chargeback of the open month (median)   ms  {statistics.median(open_reads) * 1000:>10.0f}   {open_queries} queries, {len(open_cb.rows):,} rows"
        )
        assert month_next(months[-1]) == current
    finally:
        from django.db import connections

        connections.close_all()
        if scratch and args.keep:
            say(f"== kept database {scratch.name}")
        elif scratch:
            scratch.drop()


if __name__ == "__main__":
    main()
