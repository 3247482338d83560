"""Guard check benchmark (issue 8): one command, prints its numbers.

    .venv/bin/python bench/guard.py [--seconds 60] [--rate 500]

Starts gunicorn on a fresh database holding calls, one allowance (a dollar limit that the run's
estimates pass halfway) and an agent kill switch, then drives, side by side in the same run and from
processes of their own, POST /api/v1/guard/check and a trivial authenticated endpoint (GET
/api/v1/teams/<slug>) at --rate requests/s each, open loop, over kept-alive connections. Prints p50,
p95 and p99 of both and the difference, the spend the checks allowed against the limit, and the
pg_stat_user_tables scan counters of the calls table (its partitions) over the run: the guard check
reads none of it. Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the
database is created for the run and dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from scratch import free_port, scratch_database_create

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ESTIMATE_USD = Decimal("0.01")
CONNECTIONS = 8  # kept-alive connections per driver, each sending its share of the rate


def say(message: str) -> None:
    print(message, flush=True)


def drive(
    port: int, token: str, method: str, path: str, body: bytes | None, rate: float, seconds: float, out
):
    """Send `rate` requests/s for `seconds` on CONNECTIONS connections; put (latencies, answers) on out.
    Open loop: each request has its send time on a fixed schedule, and its latency is measured from
    when it was sent (a late sender sends at once)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    answers: dict[str, int] = {}
    allowed_usd = Decimal(0)
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    interval = CONNECTIONS / rate

    def sender(offset: int) -> None:
        nonlocal allowed_usd
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        number = 0
        mine, counts, allowed = [], {}, Decimal(0)
        while True:
            due = start + offset * interval / CONNECTIONS + number * interval
            if due - start > seconds:
                break
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            mine.append(time.perf_counter() - sent)
            key = str(response.status)
            if response.status == 200 and body is not None:
                decision = json.loads(data)
                key = decision["decision"]
                if decision["reasons"] and decision["reasons"][0].startswith("the guard could not reach"):
                    key += " (fail mode, unchecked)"
                if decision["reservation_id"]:
                    allowed += ESTIMATE_USD
            counts[key] = counts.get(key, 0) + 1
            number += 1
        with lock:
            latencies.extend(mine)
            allowed_usd += allowed
            for key, count in counts.items():
                answers[key] = answers.get(key, 0) + count

    threads = [threading.Thread(target=sender, args=(offset,)) for offset in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((path, latencies, answers, str(allowed_usd)))


def alternate(port: int, token: str, check: bytes, *, count: int) -> dict[str, list[float]]:
    """`count` guard checks and `count` trivial requests, one at a time, alternating: their service
    times without queueing behind each other (the rates above measure them under load)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: dict[str, list[float]] = {"check": [], "teams": []}
    for _ in range(count):
        for name, method, path, body in (
            ("check", "POST", "/api/v1/guard/check", check),
            ("teams", "GET", "/api/v1/teams/support", None),
        ):
            sent = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            connection.getresponse().read()
            times[name].append(time.perf_counter() - sent)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def calls_scans(url: str) -> tuple[int, int]:
    """seq_scan and idx_scan summed over the partitions of ledger_call (the parent keeps none)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables "
            "WHERE relname = 'ledger_call' OR relname LIKE 'ledger_call_p%'"
        ).fetchone()
    return int(row[0]), int(row[1])


SETUP = """
import django, sys
from decimal import Decimal
django.setup()
from datetime import UTC, datetime, timedelta
from finops.accounts.services import api_token_create
from finops.guardrails.services import allowance_create
from finops.ledger.models import Agent
from ingest.writer import events_ingest
now = datetime.now(UTC)
events = [
    {"event_id": f"seed-{n}", "timestamp": (now - timedelta(days=2, minutes=n % 600)).isoformat(), "team": "support",
     "agent": "refund-bot", "task_id": f"run-{n // 10}", "provider": "openai", "model": "gpt-4o",
     "usage": {"uncached_input": 100 + n % 50, "output": 10}}
    for n in range(int(sys.argv[1]))
]
for offset in range(0, len(events), 1000):
    events_ingest(raw_events=events[offset:offset + 1000], principal=None, source="bench")
agent = Agent.objects.get(team__slug="support", name="refund-bot")
agent.max_steps, agent.max_cost_usd = 1000, Decimal("100")
agent.save()
allowance_create(principal=None, team=agent.team, agent=agent, window="day", limit_usd=Decimal(sys.argv[2]))
print(api_token_create(name="bench", scopes=["ingest", "read"])[1])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500, help="requests/s of each endpoint")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50_000, help="calls in the ledger before the run")
    parser.add_argument("--sequential", type=int, default=500, help="requests of each, one at a time")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    env["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    scratch = scratch_database_create(prefix="finops_bench_guard")
    database, url = scratch.name, scratch.url
    env["DATABASE_URL"] = url
    # reservations outlive the run (nothing settles them here), so allowed spend is comparable to the limit
    env["FINOPS_RESERVATION_TTL"] = "86400"
    # the limit is passed halfway through the run: the second half answers deny
    limit = ESTIMATE_USD * int((args.rate * args.seconds + args.sequential) / 2)
    gunicorn = None
    try:
        say(f"== database {database}; migrating, {args.calls:,} calls, an allowance of ${limit}")
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
        token = subprocess.run(
            [sys.executable, "-c", SETUP, str(args.calls), str(limit)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        port = free_port()
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "finops.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                warm = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                warm.request("GET", "/api/v1/teams/support", headers={"Authorization": f"Bearer {token}"})
                warm.getresponse().read()
                break
            except OSError:
                time.sleep(0.3)
        check = json.dumps(
            {
                "team": "support",
                "agent": "refund-bot",
                "task_id": "run-1",
                "estimated_cost_usd": str(ESTIMATE_USD),
            }
        ).encode()
        say(
            f"== {args.seconds:.0f} s: guard checks and GET /api/v1/teams/support at {args.rate:.0f}/s each "
            f"({args.workers} gunicorn workers x {args.threads} threads, {os.cpu_count()} cores)"
        )
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")  # nothing left for autovacuum to do during the run
        time.sleep(2)  # and every earlier backend's statistics flushed
        seq_before, idx_before = calls_scans(url)
        sequential = alternate(port, token, check, count=args.sequential)
        out = multiprocessing.get_context("spawn").Queue()
        drivers = [
            multiprocessing.get_context("spawn").Process(
                target=drive, args=(port, token, method, path, body, args.rate, args.seconds, out)
            )
            for method, path, body in (
                ("POST", "/api/v1/guard/check", check),
                ("GET", "/api/v1/teams/support", None),
            )
        ]
        for driver in drivers:
            driver.start()
        results = {}
        for _ in drivers:
            path, latencies, answers, allowed = out.get()
            results[path] = (latencies, answers, Decimal(allowed))
        for driver in drivers:
            driver.join()
        time.sleep(1.5)  # statistics reach pg_stat_user_tables within a second
        seq_after, idx_after = calls_scans(url)
        say("")
        guard, trivial = results["/api/v1/guard/check"], results["/api/v1/teams/support"]
        say(f"{'':28}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'requests':>10}  answers")
        for name, (latencies, answers, _) in (("guard check", guard), ("GET /api/v1/teams/<slug>", trivial)):
            say(
                f"{name:28}{percentile(latencies, 0.5):9.2f}{percentile(latencies, 0.95):9.2f}"
                f"{percentile(latencies, 0.99):9.2f}{len(latencies):10,}  {answers}"
            )
        say(
            f"{'difference':28}"
            + "".join(
                f"{percentile(guard[0], q) - percentile(trivial[0], q):9.2f}" for q in (0.5, 0.95, 0.99)
            )
            + "   (goal: p99 < 10 ms, at most 2 ms over the trivial endpoint)"
        )
        say(
            f"{'one at a time (alternating)':28}"
            + "".join(
                f"{percentile(sequential['check'], q) - percentile(sequential['teams'], q):9.2f}"
                for q in (0.5, 0.95, 0.99)
            )
            + f"   guard minus trivial; guard p50 {percentile(sequential['check'], 0.5):.2f} ms,"
            f" p99 {percentile(sequential['check'], 0.99):.2f} ms ({args.sequential} each)"
        )
        with psycopg.connect(url) as connection:
            reserved, holds = connection.execute(
                "SELECT coalesce(sum(estimated_usd), 0), count(*) FROM guardrails_reservation"
            ).fetchone()
        say(
            f"allowed spend (reserved estimates)  ${reserved:.2f} in {holds:,} reservations, of a ${limit} limit "
            f"(${guard[2]} of it in the timed run)"
        )
        say(
            f"ledger_call scans during the run    seq_scan +{seq_after - seq_before}, "
            f"idx_scan +{idx_after - idx_before}   (goal: 0 and 0)"
        )
        if reserved > limit:
            raise SystemExit("allowed spend passed the limit")
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=30)
        scratch.drop()


if __name__ == "__main__":
    main()
