"""Alert evaluation benchmark (issue 8): one command, prints its numbers.

    .venv/bin/python bench/alerts.py [--calls 10000000] [--rules 200] [--runs 5]

A fresh database holds a year of calls of 50 agents in 5 teams (tasks of 12 steps with a growing,
mostly cached context, a new prompt version per agent every quarter and one that collapses the cache,
a few tasks still running), with the rollups and task aggregates the writer keeps, 20 allowances and
--rules alert rules of every kind and scope. Prints the time and the number of queries of one full
evaluation: the first (which opens the alerts and writes their deliveries) and the following ones
(steady state, the every-minute case), and the scans of the calls table meanwhile (none).

The ledger is made by SQL, the fastest honest path to 10M calls (bench/ledger.py, shared with
bench/pages.py). Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the
database is created for the run and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ledger import AGENTS, TEAMS, calls_scans, ledger_ready, say
from scratch import run_database

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def rules_create(*, count: int) -> None:
    from finops.accounts.models import Team
    from finops.alerts.models import AlertChannel, AlertRule
    from finops.guardrails.services import allowance_create
    from finops.ledger.models import Agent

    teams = list(Team.objects.order_by("slug"))
    agents = list(Agent.objects.order_by("name"))
    for number in range(20):
        allowance_create(
            principal=None,
            team=teams[number % TEAMS],
            agent=agents[number] if number % 2 else None,
            window=("hour", "day", "week", "month")[number % 4],
            limit_usd=Decimal(40 * (number % 7 + 1)),
        )
    channels = [
        AlertChannel.objects.create(kind="webhook", target="http://127.0.0.1:9/hook", secret="whsec_eA=="),  # noqa: S106 - nothing receives it
        AlertChannel.objects.create(kind="slack", target="http://127.0.0.1:9/slack"),
        AlertChannel.objects.create(kind="email", target="oncall@example.com"),
    ]
    metrics = [
        ("cost_usd", Decimal(2)),
        ("cache_hit_rate", Decimal("0.8")),
        ("tokens", Decimal(2_000_000)),
        ("calls", Decimal(40)),
        ("cost_per_successful_task_usd", Decimal("0.5")),
        ("step_inflation_ratio", Decimal("1.4")),
        ("tokens.output", Decimal(50_000)),
        ("unpriced_calls", Decimal(0)),
    ]
    windows = ["15m", "1h", "1d", "7d", "month"]
    mix = (
        ["threshold"] * 100
        + ["forecast"] * 20
        + ["anomaly"] * 30
        + ["runaway_task"] * 20
        + ["cache_collapse"] * 15
        + ["allowance"] * 15
    )
    for number in range(count):
        kind = mix[number % len(mix)]
        scope = number % 3  # every team, one team, one agent
        fields = {
            "name": f"{kind} {number}",
            "kind": kind,
            "team": teams[number % TEAMS] if scope == 1 else None,
            "agent": agents[number % AGENTS] if scope == 2 else None,
            "for_minutes": (0, 0, 5)[number % 3],
        }
        if kind == "threshold":
            metric, value = metrics[number % len(metrics)]
            window = windows[(number // len(metrics)) % len(windows)]
            fields |= {
                "metric": metric,
                "value": value,
                "window": window,
                "op": "lt" if metric == "cache_hit_rate" else "gt",
            }
        elif kind == "forecast":
            fields["value"] = Decimal(300 * (number % 5 + 1))
        elif kind == "anomaly":
            fields |= {"window": windows[number % 4], "value": Decimal(2)}
        elif kind == "runaway_task":
            fields |= {
                "metric": ("cost_usd", "steps")[number % 2],
                "value": (Decimal("0.2"), Decimal(8))[number % 2],
            }
        elif kind == "cache_collapse":
            fields["value"] = Decimal("0.2")
        rule = AlertRule.objects.create(**fields)
        rule.channels.set(channels[: number % 3 + 1])


def evaluation_measure(now: datetime) -> tuple[float, int, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from finops.alerts.evaluate import alerts_evaluate

    with CaptureQueriesContext(connection) as queries:
        clock = time.perf_counter()
        summary = alerts_evaluate(now=now)
        elapsed = time.perf_counter() - clock
    return elapsed, len(queries), summary


def profile(now: datetime) -> None:
    import cProfile
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from finops.alerts.evaluate import alerts_evaluate

    profiler = cProfile.Profile()
    with CaptureQueriesContext(connection) as queries:
        profiler.runcall(alerts_evaluate, now=now)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    for query in sorted(queries, key=lambda query: -float(query["time"]))[:8]:
        say(f"{query['time']} s  {query['sql'][:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="steady-state evaluations after the first")
    parser.add_argument(
        "--profile", action="store_true", help="print where one more evaluation spends its time"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME", help="evaluate on a database kept by --keep")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_alerts", reuse=args.reuse)
    try:
        now = ledger_ready(new=scratch is not None, calls=args.calls)
        from finops.alerts.models import Alert, Delivery

        if scratch:
            rules_create(count=args.rules)
        else:
            Alert.objects.all().delete()
        scans_before = calls_scans()
        say(f"== {args.rules} rules: first evaluation")
        first, first_queries, summary = evaluation_measure(now)
        say(
            f"   {first * 1000:.0f} ms, {first_queries} queries; {summary.breaches} breaches, "
            f"{Alert.objects.count()} alerts opened, {Delivery.objects.count()} deliveries; "
            f"errors: {summary.errors or 'none'}"
        )
        steady = []
        for run in range(args.runs):
            elapsed, queries, summary = evaluation_measure(now + timedelta(minutes=run + 1))
            steady.append(elapsed)
            say(f"   run {run + 1}: {elapsed * 1000:.0f} ms, {queries} queries")
        scans_after = calls_scans()
        if args.profile:
            profile(now + timedelta(minutes=args.runs + 1))
        say("")
        say(f"calls                                {args.calls:>12,}")
        say(f"rules                                {args.rules:>12,}")
        say(f"first evaluation               ms    {first * 1000:>12.0f}   {first_queries} queries")
        say(
            f"evaluation (median of {args.runs})      ms    {statistics.median(steady) * 1000:>12.0f}   "
            f"{queries} queries   (goal < 1000 ms)"
        )
        say(
            f"calls table scans meanwhile          {scans_after[0] - scans_before[0]:>12} seq, "
            f"{scans_after[1] - scans_before[1]} index"
        )
    finally:
        from django.db import connections

        connections.close_all()
        if scratch and args.keep:
            say(f"== kept database {scratch.name} (bench/alerts.py --reuse {scratch.name})")
        elif scratch:
            scratch.drop()


if __name__ == "__main__":
    main()
