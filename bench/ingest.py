"""Ingest benchmark (issue 3, point 8): one command, prints its numbers.

    .venv/bin/python bench/ingest.py [--events 1000000]

Side by side, in one run, against one database:
  1. baseline: a binary COPY of the same pre-built rows (14 columns) into a bare, unindexed table;
  2. import: `finops import FILE` of the events as JSONL (validate → price → dedupe → write with
     rollups), as a separate process whose memory is sampled;
  3. HTTP: POST /api/v1/events in batches of 1,000 to a gunicorn server (2 workers), from sending
     processes keeping 2 requests in flight (--http-in-flight).
Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data. A fresh database is
created for the run and dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("acme", "acme-large-2"),  # unpriced: flagged, never zero
]


def say(message: str) -> None:
    print(message, flush=True)


def generate(path: Path, count: int, *, prefix: str = "ev") -> None:
    """Realistic canonical events: 5 teams, 20 agents, runs of 12 steps with a growing cached context."""
    rng = random.Random(20261122)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    with path.open("w") as out:
        for number in range(count):
            run, step = divmod(number, 12)
            provider, model = MODELS[run % len(MODELS)]
            context = 3000 + 2500 * step
            cached = int(context * rng.uniform(0.6, 0.95))
            event = {
                "event_id": f"{prefix}-{number}",
                "timestamp": (start + timedelta(seconds=number * 2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "team": f"team-{run % 5}",
                "agent": f"agent-{run % 20}",
                "task_id": f"run-{run}",
                "step": step + 1,
                "provider": provider,
                "model": model,
                "usage": {
                    "uncached_input": context - cached,
                    "cache_read": cached,
                    "cache_write_5m": 1500 if step == 0 else 0,
                    "output": rng.randint(50, 900),
                },
                "latency_ms": rng.randint(300, 6000),
                "status": "ok",
                "prompt_version": f"p@{run % 7}",
                "tags": {"feature": "bench"},
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


def baseline_rows(path: Path) -> list[tuple]:
    rows = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines):
            event = json.loads(line)
            usage = event["usage"]
            rows.append(
                (
                    number,
                    datetime.fromisoformat(event["timestamp"]),
                    event["event_id"],
                    number % 5,
                    number % 20,
                    event["task_id"],
                    event["step"],
                    event["provider"],
                    event["model"],
                    usage["uncached_input"],
                    usage["cache_read"],
                    usage["cache_write_5m"],
                    0,
                    usage["output"],
                )
            )
    return rows


def copy_baseline(url: str, rows: list[tuple]) -> float:
    with psycopg.connect(url) as connection:
        connection.execute(
            "CREATE TABLE bench_bare (id int8, ts timestamptz, event_id text, team_id int8, agent_id int8, "
            "task_id text, step int4, provider text, model text, uncached_input int8, cache_read int8, "
            "cache_write_5m int8, cache_write_1h int8, output int8)"
        )
        connection.commit()
        started = time.perf_counter()
        with connection.cursor().copy("COPY bench_bare FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(
                [
                    "int8",
                    "timestamptz",
                    "text",
                    "int8",
                    "int8",
                    "text",
                    "int4",
                    "text",
                    "text",
                    "int8",
                    "int8",
                    "int8",
                    "int8",
                    "int8",
                ]
            )
            for row in rows:
                copy.write_row(row)
        connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE bench_bare")
        connection.commit()
    return len(rows) / elapsed


def reset_ledger(url: str) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "TRUNCATE ledger_eventkey, ledger_call, ledger_dailyrollup, ledger_task, ingest_quarantinedrow"
        )


def ledger_counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as connection:
        calls = connection.execute("SELECT count(*) FROM ledger_call").fetchone()[0]
        rolled = connection.execute("SELECT coalesce(sum(calls), 0) FROM ledger_dailyrollup").fetchone()[0]
    return calls, int(rolled)


def run_import(env: dict, path: Path, count: int) -> tuple[float, float, float]:
    """rows/s, RSS at start (MB), peak RSS (MB) of the importing process."""
    command = [sys.executable, "-m", "finops.cli", "import", str(path), "--format", "events-jsonl"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watched = psutil.Process(process.pid)
    start_rss = peak_rss = 0.0
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            break
        if not start_rss and time.perf_counter() - started > 2.0:
            start_rss = rss  # after imports and Django setup, as the import begins
        peak_rss = max(peak_rss, rss)
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    output = process.stdout.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"finops import failed ({process.returncode}):\n{output}")
    return count / elapsed, start_rss or peak_rss, peak_rss


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _send(port: int, token: str, path: str, batch: int, part: int, parts: int, queue) -> None:
    """POST every `parts`-th batch of the file, starting at batch `part`, one request at a time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    sent = 0
    with open(path, "rb") as lines:
        for number in itertools.count():
            chunk = [line for _, line in zip(range(batch), lines, strict=False)]
            if not chunk:
                break
            if number % parts != part:
                continue
            connection.request("POST", "/api/v1/events", body=b"".join(chunk), headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {body[:500]!r}")
            sent += json.loads(body)["accepted"]
    queue.put(sent)


def run_http(env: dict, path: Path, count: int, batch: int, in_flight: int) -> float:
    port = free_port()
    token = (
        subprocess.run(
            [sys.executable, "-m", "finops.cli", "token", "create", "--name", "bench", "--scope", "ingest"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "finops.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        queue = multiprocessing.Queue()
        started = time.perf_counter()
        senders = [
            multiprocessing.Process(
                target=_send, args=(port, token, str(path), batch, part, in_flight, queue)
            )
            for part in range(in_flight)
        ]
        for sender in senders:
            sender.start()
        accepted = sum(queue.get() for _ in senders)
        for sender in senders:
            sender.join()
        elapsed = time.perf_counter() - started
        if accepted != count:
            raise SystemExit(f"HTTP path accepted {accepted} of {count} events")
        return count / elapsed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--http-batch", type=int, default=1000)
    parser.add_argument(
        "--http-in-flight",
        type=int,
        default=2,
        help="requests in flight: one sending process each (2 workers serve)",
    )
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    from finops import embedded

    server_url = os.environ.get("DATABASE_URL") or embedded.ensure_postgres()
    database = f"finops_bench_{os.getpid()}"
    server = urlsplit(server_url)
    admin_url = urlunsplit(server._replace(path="/postgres"))
    url = urlunsplit(server._replace(path=f"/{database}"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    env["DATABASE_URL"] = url
    try:
        say(f"== database {database}; migrating")
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
        events_file = OUT / f"events-{args.events}.jsonl"
        if not events_file.exists():
            say(f"== generating {args.events:,} events → {events_file}")
            generate(events_file, args.events)
        say("== baseline: binary COPY of pre-built 14-column rows into a bare table")
        rows = baseline_rows(events_file)
        copy_rate = copy_baseline(url, rows)
        del rows
        say(f"   {copy_rate:,.0f} rows/s")
        say("== import: finops import (validate, price, dedupe, write with rollups)")
        import_rate, start_rss, peak_rss = run_import(env, events_file, args.events)
        calls, rolled = ledger_counts(url)
        assert calls == rolled == args.events, (calls, rolled)
        say(f"   {import_rate:,.0f} events/s; memory {start_rss:.0f} MB at start, {peak_rss:.0f} MB peak")
        http_rate = None
        if not args.skip_http:
            reset_ledger(url)
            say(
                f"== HTTP: POST /api/v1/events, batches of {args.http_batch:,}, "
                f"{args.http_in_flight} in flight (one sending process each)"
            )
            http_rate = run_http(env, events_file, args.events, args.http_batch, args.http_in_flight)
            say(f"   {http_rate:,.0f} events/s")
        say("")
        say(f"events                         {args.events:>12,}")
        say(f"binary COPY baseline   rows/s  {copy_rate:>12,.0f}")
        say(
            f"import path          events/s  {import_rate:>12,.0f}   {import_rate / copy_rate:6.1%} of COPY (goal ≥ 25%)"
        )
        if http_rate is not None:
            say(
                f"HTTP path            events/s  {http_rate:>12,.0f}   {http_rate / copy_rate:6.1%} of COPY (goal ≥ 12%)"
            )
        say(f"import memory growth       MB  {peak_rss - start_rss:>12,.0f}   (goal ≤ 100)")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
