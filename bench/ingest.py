"""Ingest benchmark (issue 3, point 8): one command, prints its numbers.

    .venv/bin/python bench/ingest.py [--events 1000000]

Side by side, in one run, against one database:
  1. baseline: a binary COPY of the same pre-built rows (14 columns) into a bare, unindexed table;
  2. import: `finops import FILE` of the events as JSONL (validate → price → dedupe → write with
     rollups), as a separate process whose memory and CPU are sampled; its rate is the one the import
     reports (reading the file to the last commit), beside the rate from process start to exit;
  3. HTTP: POST /api/v1/events in batches of 1,000 to the web server as `finops up` runs it
     (granian, 2 workers, access log off), from sending processes keeping 2 requests in flight
     (--http-in-flight);
  4. tasks: POST /api/v1/tasks of --tasks outcomes in batches of --tasks-batch, to the same kind of
     server (--only-tasks runs this one alone).
Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data. A fresh database is
created for the run and dropped at the end; each measurement starts after a CHECKPOINT.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty

import psutil
import psycopg
from scratch import free_port, scratch_database_create

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from finops.core import supervisor  # noqa: E402  (the project root on the path first)

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


def generate_outcomes(path: Path, count: int) -> None:
    """Task outcomes, one JSON object a line: 5 teams, 20 agents, every task new."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    with path.open("w") as out:
        for number in range(count):
            began = start + timedelta(seconds=number * 30)
            outcome = {
                "task_id": f"run-{number}",
                "team": f"team-{number % 5}",
                "agent": f"agent-{number % 20}",
                "status": ("success", "success", "failure", "abandoned")[number % 4],
                "started_at": began.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ended_at": (began + timedelta(seconds=25)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ideal_steps": 8,
                "tags": {"feature": "bench"},
            }
            out.write(json.dumps(outcome, separators=(",", ":")) + "\n")


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


def checkpoint(url: str) -> None:
    """Start each measurement with no checkpoint pending: one that falls inside a run doubles its WAL
    (full-page images) and competes for the disk, which made runs differ by 2x."""
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        say("   (no CHECKPOINT: this role may not; a checkpoint during a run may slow it)")


class ServerCpu:
    """CPU time spent by the PostgreSQL processes on this machine since `start`, sampled often enough
    to count the backends that exit before the end (a client's connections close with it). None when
    no PostgreSQL process is readable here (a remote server)."""

    def __init__(self) -> None:
        self.before = self._read()
        self.latest = dict(self.before)

    @staticmethod
    def _read() -> dict[int, float]:
        seen = {}
        for process in psutil.process_iter(["name", "cpu_times"]):
            times = process.info["cpu_times"]
            if process.info["name"] in {"postgres", "postmaster"} and times is not None:
                seen[process.pid] = times.user + times.system
        return seen

    def sample(self) -> None:
        self.latest.update(self._read())

    def seconds(self) -> float | None:
        self.sample()
        if not self.latest:
            return None
        return sum(spent - self.before.get(pid, 0.0) for pid, spent in self.latest.items())


@dataclass
class ImportRun:
    process_rate: float  # events/s from start to exit of the process (with interpreter and Django start)
    import_rate: float  # events/s of the import itself, as `finops import` reports it
    start_rss: float
    peak_rss: float
    client_cpu_us: float  # CPU of the importing process per event
    server_cpu_us: float | None  # CPU of the database server per event


def run_import(env: dict, path: Path, count: int) -> ImportRun:
    command = [sys.executable, "-m", "finops.cli", "import", str(path), "--format", "events-jsonl"]
    server = ServerCpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watched = psutil.Process(process.pid)
    start_rss = peak_rss = client_cpu = 0.0
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss / 2**20
            times = watched.cpu_times()
            client_cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        if not start_rss and time.perf_counter() - started > 2.0:
            start_rss = rss  # after imports and Django setup, as the import begins
        peak_rss = max(peak_rss, rss)
        server.sample()
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    server_seconds = server.seconds()
    output = process.stdout.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"finops import failed ({process.returncode}):\n{output}")
    reported = re.search(r"rows read in [\d.]+ s \(([\d,]+) rows/s\)", output)
    if reported is None:
        raise SystemExit(f"finops import did not report its rate:\n{output}")
    return ImportRun(
        process_rate=count / elapsed,
        import_rate=float(reported.group(1).replace(",", "")),
        start_rss=start_rss or peak_rss,
        peak_rss=peak_rss,
        client_cpu_us=client_cpu / count * 1e6,
        server_cpu_us=None if server_seconds is None else server_seconds / count * 1e6,
    )


def _send(port: int, token: str, path: str, batch: int, part: int, parts: int, queue, endpoint: str) -> None:
    """POST every `parts`-th batch of the file, starting at batch `part`, one request at a time: as
    NDJSON to /api/v1/events, as a JSON array to /api/v1/tasks."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    as_array = endpoint == TASKS_ENDPOINT
    content_type = "application/json" if as_array else "application/x-ndjson"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    sent = 0
    with open(path, "rb") as lines:
        for number in itertools.count():
            chunk = [line for _, line in zip(range(batch), lines, strict=False)]
            if not chunk:
                break
            if number % parts != part:
                continue
            body = b"[" + b",".join(line.rstrip() for line in chunk) + b"]" if as_array else b"".join(chunk)
            connection.request("POST", endpoint, body=body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {body[:500]!r}")
            sent += json.loads(body)["accepted"]
    queue.put(sent)


EVENTS_ENDPOINT = "/api/v1/events"
TASKS_ENDPOINT = "/api/v1/tasks"


@dataclass
class HttpRun:
    rate: float  # events/s
    web_cpu_us: float  # CPU of the web server's workers per event
    server_cpu_us: float | None  # CPU of the database server per event


def run_http(
    env: dict, path: Path, count: int, batch: int, in_flight: int, endpoint: str = EVENTS_ENDPOINT
) -> HttpRun:
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
        supervisor.web_command(port=port, access_log=False, log_level="warning"), env=env, cwd=ROOT
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # a worker answers (the port is open before any worker is)
            try:
                ready = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                ready.request("GET", "/api/v1/teams")
                ready.getresponse().read()
                ready.close()
                break
            except OSError:
                time.sleep(0.2)
        queue = multiprocessing.Queue()
        workers = psutil.Process(server.pid).children()
        web_before = sum(sum(worker.cpu_times()[:2]) for worker in workers)
        database = ServerCpu()
        started = time.perf_counter()
        senders = [
            multiprocessing.Process(
                target=_send, args=(port, token, str(path), batch, part, in_flight, queue, endpoint)
            )
            for part in range(in_flight)
        ]
        for sender in senders:
            sender.start()
        accepted = 0
        for _ in senders:
            while True:
                try:
                    accepted += queue.get(timeout=0.1)
                    break
                except Empty:
                    database.sample()
        web_cpu = sum(sum(worker.cpu_times()[:2]) for worker in workers) - web_before
        database_cpu = database.seconds()
        for sender in senders:
            sender.join()
        elapsed = time.perf_counter() - started
        if accepted != count:
            raise SystemExit(f"HTTP path {endpoint} accepted {accepted} of {count}")
        return HttpRun(
            rate=count / elapsed,
            web_cpu_us=web_cpu / count * 1e6,
            server_cpu_us=None if database_cpu is None else database_cpu / count * 1e6,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def run_tasks(env: dict, url: str, args: argparse.Namespace) -> None:
    outcomes_file = OUT / f"outcomes-{args.tasks}.jsonl"
    if not outcomes_file.exists():
        generate_outcomes(outcomes_file, args.tasks)
    say(
        f"== tasks: POST /api/v1/tasks, {args.tasks:,} outcomes in batches of {args.tasks_batch:,}, "
        f"{args.http_in_flight} in flight"
    )
    checkpoint(url)
    run = run_http(env, outcomes_file, args.tasks, args.tasks_batch, args.http_in_flight, TASKS_ENDPOINT)
    with psycopg.connect(url) as connection:
        recorded = connection.execute("SELECT count(*) FROM ledger_task WHERE status IS NOT NULL").fetchone()[
            0
        ]
    assert recorded == args.tasks, (recorded, args.tasks)
    say(
        f"tasks path         outcomes/s  {run.rate:>12,.0f}   web workers {run.web_cpu_us:.0f} µs per outcome"
    )


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
    parser.add_argument("--tasks", type=int, default=100_000, help="task outcomes to POST (0: none)")
    parser.add_argument("--tasks-batch", type=int, default=200)
    parser.add_argument("--only-tasks", action="store_true", help="run the tasks measurement alone")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    scratch = scratch_database_create(prefix="finops_bench")
    database, url = scratch.name, scratch.url
    env["DATABASE_URL"] = url
    try:
        say(f"== database {database}; migrating")
        subprocess.run([sys.executable, "-m", "finops.cli", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
        if args.only_tasks:
            run_tasks(env, url, args)
            return
        events_file = OUT / f"events-{args.events}.jsonl"
        if not events_file.exists():
            say(f"== generating {args.events:,} events → {events_file}")
            generate(events_file, args.events)
        say("== baseline: binary COPY of pre-built 14-column rows into a bare table")
        rows = baseline_rows(events_file)
        checkpoint(url)
        copy_rate = copy_baseline(url, rows)
        del rows
        say(f"   {copy_rate:,.0f} rows/s")
        say("== import: finops import (validate, price, dedupe, write with rollups)")
        checkpoint(url)
        run = run_import(env, events_file, args.events)
        calls, rolled = ledger_counts(url)
        assert calls == rolled == args.events, (calls, rolled)
        say(
            f"   {run.import_rate:,.0f} events/s ({run.process_rate:,.0f} from process start to exit); "
            f"memory {run.start_rss:.0f} MB at start, {run.peak_rss:.0f} MB peak"
        )
        http_rate = None
        if not args.skip_http:
            reset_ledger(url)
            say(
                f"== HTTP: POST /api/v1/events, batches of {args.http_batch:,}, "
                f"{args.http_in_flight} in flight (one sending process each)"
            )
            checkpoint(url)
            http = run_http(env, events_file, args.events, args.http_batch, args.http_in_flight)
            http_rate = http.rate
            say(f"   {http_rate:,.0f} events/s")
        say("")
        say(f"events                         {args.events:>12,}")
        say(f"binary COPY baseline   rows/s  {copy_rate:>12,.0f}")
        say(
            f"import path          events/s  {run.import_rate:>12,.0f}   "
            f"{run.import_rate / copy_rate:6.1%} of COPY (goal ≥ 25%)"
        )
        if http_rate is not None:
            say(
                f"HTTP path            events/s  {http_rate:>12,.0f}   {http_rate / copy_rate:6.1%} of COPY (goal ≥ 12%)"
            )
        say(f"import memory growth       MB  {run.peak_rss - run.start_rss:>12,.0f}   (goal ≤ 100)")
        server = "n/a (remote server)" if run.server_cpu_us is None else f"{run.server_cpu_us:.1f}"
        say(
            f"import CPU per event       µs  {run.client_cpu_us:>12.1f}   in finops import, {server} in PostgreSQL "
            f"({os.cpu_count()} cores)"
        )
        if http_rate is not None:
            server = "n/a (remote server)" if http.server_cpu_us is None else f"{http.server_cpu_us:.1f}"
            say(
                f"HTTP CPU per event         µs  {http.web_cpu_us:>12.1f}   in the web workers, {server} in PostgreSQL"
            )
        if args.tasks:
            run_tasks(env, url, args)
    finally:
        scratch.drop()


if __name__ == "__main__":
    main()
