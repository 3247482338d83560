"""A year of traffic by SQL, for the benchmarks that need a big ledger (alerts.py, pages.py).

The calls by generate_series (50 agents in 5 teams, tasks of 12 steps with a growing, mostly cached
context, a new prompt version per agent every quarter and one that collapses the cache, a few tasks
still running), priced at claude-sonnet-4-5's list rates in SQL; then the daily rollups, the minute
rollup (the calls past finops.ledger.rollups.recent_cutoff, as the writer keeps it), the prompt-version
rollups (all-time and per day) and the task aggregates grouped from those calls, as the writer would have written them (its
idempotency keys are left out: no reader here needs them). The per-day task rollups are filled by
ledger_task's triggers as the tasks go in, as they are for every writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

TEAMS, AGENTS, STEPS = 5, 50, 12


def say(message: str) -> None:
    print(message, flush=True)


CALLS_SQL = """
INSERT INTO ledger_call (timestamp, team_id, agent_id, event_id, task_id, step, provider, model,
    uncached_input, cache_read, cache_write_5m, cache_write_1h, output, reasoning, prompt_version,
    status, cost_usd, ingested_at)
SELECT ts, team_ids[agent %% 5 + 1], agent_ids[agent + 1], 'ev-' || n, 'run-' || (n / 12), n %% 12 + 1,
    'anthropic', 'claude-sonnet-4-5', uncached, cached, CASE WHEN n %% 12 = 0 THEN 1500 ELSE 0 END, 0,
    output, 0, 'p' || agent || '@' || version, 'ok',
    (uncached * 3 + cached * 0.3 + CASE WHEN n %% 12 = 0 THEN 1500 * 3.75 ELSE 0 END + output * 15)
        / 1000000.0, now()
FROM (
    SELECT n, ts, agent, version, output,
        (3000 + 2500 * (n %% 12)) - cached AS uncached, cached
    FROM (
        SELECT n, ts, agent, version, 50 + (n * 7919) %% 850 AS output,
            ((3000 + 2500 * (n %% 12)) * CASE
                -- agent 7's newest version (the last 3 days) collapses its cache hit rate
                WHEN agent = 7 AND ts > %(now)s - interval '3 days' THEN 0.35
                ELSE 0.80 + ((n * 31) %% 15) / 100.0 END)::bigint AS cached
        FROM (
            SELECT n, %(start)s + (%(span)s * n / %(calls)s) * interval '1 second' AS ts,
                (n / 12) %% 50 AS agent,
                CASE WHEN (n / 12) %% 50 = 7 AND %(start)s + (%(span)s * n / %(calls)s) * interval '1 second'
                        > %(now)s - interval '3 days' THEN 99
                    ELSE ((%(span)s * n / %(calls)s) / (86400 * 91))::int END AS version
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        ) AS timed
    ) AS priced
) AS calls, (SELECT array_agg(id ORDER BY slug) AS team_ids FROM accounts_team) AS teams,
    (SELECT array_agg(id ORDER BY name) AS agent_ids FROM ledger_agent) AS agents
"""

TOKENS = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")
_sum = ", ".join(f"sum({t})" for t in TOKENS)
_cols = ", ".join(TOKENS)

ROLLUPS_SQL = [
    f"""INSERT INTO ledger_dailyrollup (day, team_id, agent_id, provider, model, calls, unpriced_calls,
        batch_calls, calls_not_in_task, cost_usd, cost_not_in_task_usd, {_cols},
        cost_uncached_input_usd, cost_cache_read_usd, cost_cache_write_5m_usd, cost_cache_write_1h_usd,
        cost_output_usd, cost_reasoning_usd)
    SELECT (timestamp AT TIME ZONE 'UTC')::date, team_id, agent_id, provider, model, count(*), 0, 0, 0,
        sum(cost_usd), 0, {_sum}, sum(uncached_input) * 3 / 1e6, sum(cache_read) * 0.3 / 1e6,
        sum(cache_write_5m) * 3.75 / 1e6, 0, sum(output) * 15 / 1e6, 0
    FROM ledger_call GROUP BY 1, 2, 3, 4, 5""",
    f"""INSERT INTO ledger_recentrollup (minute, team_id, agent_id, calls, unpriced_calls, calls_not_in_task,
        cost_usd, {_cols})
    SELECT date_trunc('minute', timestamp), team_id, agent_id, count(*), 0, 0, sum(cost_usd), {_sum}
    FROM ledger_call WHERE timestamp >= %(cutoff)s GROUP BY 1, 2, 3""",
    """INSERT INTO ledger_promptversionrollup (team_id, agent_id, prompt_version, first_call_at, last_call_at,
        calls, cache_read, input_tokens)
    SELECT team_id, agent_id, prompt_version, min(timestamp), max(timestamp), count(*), sum(cache_read),
        sum(uncached_input + cache_read + cache_write_5m + cache_write_1h)
    FROM ledger_call GROUP BY 1, 2, 3""",
    """INSERT INTO ledger_promptversiondailyrollup (day, team_id, agent_id, prompt_version, first_call_at,
        last_call_at, calls, cache_read, input_tokens, cost_usd, unpriced_calls, calls_in_tasks,
        unpriced_calls_in_tasks, cost_in_tasks_usd)
    SELECT (timestamp AT TIME ZONE 'UTC')::date, team_id, agent_id, prompt_version, min(timestamp),
        max(timestamp), count(*), sum(cache_read), sum(uncached_input + cache_read + cache_write_5m + cache_write_1h),
        sum(cost_usd), 0, count(*), 0, sum(cost_usd)
    FROM ledger_call GROUP BY 1, 2, 3, 4""",
    # tasks: an outcome for each, but those whose last call is in the last 10 minutes: still running
    f"""INSERT INTO ledger_task (team_id, task_id, agent_id, status, started_at, ended_at, task_type, tags,
        steps, cost_usd, unpriced_calls, first_call_at, last_call_at, ideal_steps, {_cols})
    SELECT team_id, task_id, min(agent_id),
        CASE WHEN max(timestamp) > %(now)s - interval '10 minutes' THEN NULL
            ELSE (ARRAY['success', 'success', 'success', 'failure', 'abandoned'])[abs(hashtext(task_id)) %% 5 + 1] END,
        min(timestamp), CASE WHEN max(timestamp) > %(now)s - interval '10 minutes' THEN NULL ELSE max(timestamp) END,
        '', '{{}}'::jsonb, count(*), sum(cost_usd), 0, min(timestamp), max(timestamp), 8, {_sum}
    FROM ledger_call GROUP BY team_id, task_id""",
]


def ledger_ready(*, new: bool, calls: int, span_days: float = 365, end: datetime | None = None) -> datetime:
    """Set Django up on the run's database (DATABASE_URL) and answer the moment its ledger ends: a new
    database is migrated and filled with `calls` calls over the `span_days` days ending at `end` (default:
    now); a kept one keeps its own moment, so its rollups cover the windows as they did."""
    import django

    if new:
        say(f"== database {urlsplit(os.environ['DATABASE_URL']).path.lstrip('/')}; migrating")
        root = Path(__file__).resolve().parent.parent
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], cwd=root, check=True)
    django.setup()
    if not new:
        from finops.ledger.models import Task

        return Task.objects.order_by("-last_call_at").values_list("last_call_at", flat=True)[0]
    now = end or datetime.now(UTC)
    say(f"== {calls:,} calls over {span_days:g} days, {AGENTS} agents in {TEAMS} teams (SQL)")
    ledger_create(calls=calls, now=now, span_days=span_days)
    return now


def ledger_create(*, calls: int, now: datetime, span_days: float = 365) -> None:
    from django.db import connection

    from finops.accounts.models import Team
    from finops.ledger.models import Agent
    from finops.ledger.rollups import recent_cutoff
    from finops.ledger.services import call_partitions_ensure

    teams = [Team.objects.create(slug=f"team-{t}", name=f"Team {t}") for t in range(TEAMS)]
    for a in range(AGENTS):
        Agent.objects.create(team=teams[a % TEAMS], name=f"agent-{a:02d}", ideal_steps=10)
    span = int(span_days * 86400)
    start = now - timedelta(seconds=span)
    months, day = set(), start.date()
    while day <= now.date() + timedelta(days=1):
        months.add(date(day.year, day.month, 1))
        day += timedelta(days=27)
    months.add(date(now.year, now.month, 1))
    call_partitions_ensure(months=months)
    params = {"start": start, "span": span, "calls": calls, "now": now, "cutoff": recent_cutoff(now=now)}
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        clock = time.monotonic()
        chunk = 1_000_000
        for first in range(0, calls, chunk):
            cursor.execute(CALLS_SQL, {**params, "first": first, "last": min(first + chunk, calls) - 1})
            say(f"   {min(first + chunk, calls):,} calls ({time.monotonic() - clock:.0f} s)")
        for sql in ROLLUPS_SQL:
            cursor.execute(sql, params)
        cursor.execute("VACUUM ANALYZE")
        say(f"   rollups and tasks ({time.monotonic() - clock:.0f} s)")


def calls_scans() -> tuple[int, int]:
    """Sequential and index scans of the calls table (all partitions) so far."""
    return table_scans(["ledger_call"])["ledger_call"]


def table_scans(tables: list[str]) -> dict[str, tuple[int, int]]:
    """(sequential, index) scans so far of each table, a partitioned one with its partitions."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        scans = {}
        for table in tables:
            cursor.execute(
                "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables "
                "WHERE relname = %s OR relname LIKE %s",
                [table, f"{table}_p%"],
            )
            scans[table] = tuple(int(value) for value in cursor.fetchone())
        return scans
