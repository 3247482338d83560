"""Guard check benchmark (issue 8): one command, prints its numbers.

    .venv/bin/python bench/guard.py [--seconds 60] [--rate 500]

Starts the web server (granian, as `finops up` runs it; --server gunicorn to compare) on a fresh database
holding calls, one allowance (a dollar limit that the run's estimates pass halfway) and an agent kill
switch, then drives, side by side in the same run and from a process of its own, POST /api/v1/guard/check at
--rate requests/s and a trivial authenticated endpoint at --trivial-rate (100/s), open loop, over kept-alive
connections. The trivial endpoint is GET /api/v1/whoami (--trivial whoami, the default): the same server,
middleware and token check as the guard check, so the difference is the check's own cost; --trivial teams
takes GET /api/v1/teams/<slug> (a DRF viewset) instead. One at a time, before the timed run, all three are timed for
comparison; then --warmup seconds of the same load, not timed, so that every server thread has opened its
database connection. Prints p50, p95 and p99 of both and the difference, the spend the checks allowed
against the limit, and the pg_stat_user_tables scan counters of the calls table (its partitions) over the
run: the guard check reads none of it. The server's access log is off (`finops up` keeps it on). Uses
DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the database is created for the run
and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import importlib.util
import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from scratch import free_port, scratch_database_create

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from finops.core import supervisor  # noqa: E402  (the project root on the path first)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ESTIMATE_USD = Decimal("0.01")
CONNECTIONS = 8  # kept-alive connections opened per stream before the run (more when none is idle)
SLOW_SECONDS = 0.010  # the goal's p99: answers slower than this are counted by when they were due
WINDOW_SECONDS = 2
DRAIN_SECONDS = 20  # how long after its schedule the generator waits for the last answers
MAX_CONNECTIONS = 64  # per stream: past it a request waits for one (a saturated server must not be flooded)


def say(message: str) -> None:
    print(message, flush=True)


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: one request at a time, the answer read by Content-Length."""

    def __init__(self, done, lost) -> None:
        self.done = done  # done(connection, status, body)
        self.lost = lost  # lost(connection): the server closed it
        self.transport = None
        self.buffer = b""
        self.length = None
        self.head = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.length is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = end + 4
            headers = self.buffer[:end].decode("latin-1").lower()
            self.status = int(headers[9:12])
            self.length = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
        if len(self.buffer) >= self.head + self.length:
            body = self.buffer[self.head : self.head + self.length]
            self.buffer, self.length = b"", None
            self.done(self, self.status, body)

    def connection_lost(self, exc) -> None:
        self.lost(self)


def drive(port: int, streams: list[tuple[str, bytes, float]], seconds: float, out) -> None:
    """Open loop, on one asyncio event loop in this process (a light load generator: it shares the
    server's cores): each stream (name, raw request, rate) sends `rate` requests/s on a fixed schedule over
    kept-alive connections, opening another whenever none is idle, so the schedule never waits for an
    answer. A latency runs from the request's scheduled time, so time spent queued anywhere counts (no
    coordinated omission). Puts {name: (latencies, answers, allowed_usd)} on out, and when answers over
    SLOW_SECONDS were due (seconds into the run)."""
    asyncio.run(_drive(port, streams, seconds, out))


async def _drive(port, streams, seconds, out) -> None:
    loop = asyncio.get_running_loop()
    results = {name: ([], {}, [Decimal(0)]) for name, _, _ in streams}
    request_of = {name: request for name, request, _ in streams}
    idle: dict[str, list] = {name: [] for name, _, _ in streams}
    waiting = {name: collections.deque() for name, _, _ in streams}
    opened = dict.fromkeys(request_of, 0)
    opening = dict.fromkeys(request_of, 0)
    idle_or_busy: dict[str, set] = {name: set() for name in request_of}
    due_of: dict = {}
    slow: list[float] = []
    pending = [0]
    finished = loop.create_future()

    def answered(connection, status, body, *, name) -> None:
        latencies, answers, allowed = results[name]
        due = due_of.pop(connection)
        latencies.append(loop.time() - due)
        if latencies[-1] > SLOW_SECONDS:
            slow.append(due - start)
        key = str(status)
        if status == 200 and name == "guard check":
            decision = json.loads(body)
            key = decision["decision"]
            if decision["reasons"] and decision["reasons"][0].startswith("the guard could not reach"):
                key += " (fail mode, unchecked)"
            if decision["reservation_id"]:
                allowed[0] += ESTIMATE_USD
        answers[key] = answers.get(key, 0) + 1
        pending[0] -= 1
        if waiting[
            name
        ]:  # a request that found every connection busy goes next, still timed from its due time
            due_of[connection] = waiting[name].popleft()
            connection.transport.write(request_of[name])
        else:
            idle[name].append(connection)
        if pending[0] == 0 and finished_sending[0] == len(streams) and not finished.done():
            finished.set_result(None)

    def lost(connection, *, name) -> None:
        opened[name] -= 1
        if connection in idle[name]:
            idle[name].remove(connection)
        if connection in due_of:  # closed with a request in flight: an answer that never came
            due_of.pop(connection)
            answers = results[name][1]
            answers["connection closed"] = answers.get("connection closed", 0) + 1
            pending[0] -= 1
            if pending[0] == 0 and finished_sending[0] == len(streams) and not finished.done():
                finished.set_result(None)

    async def connect(name):
        _, connection = await loop.create_connection(
            lambda: _Connection(lambda c, s, b: answered(c, s, b, name=name), lambda c: lost(c, name=name)),
            "127.0.0.1",
            port,
        )
        opened[name] += 1
        idle_or_busy[name].add(connection)
        return connection

    def send(name, due) -> None:
        pending[0] += 1
        if idle[name]:
            connection = idle[name].pop()
            due_of[connection] = due
            connection.transport.write(request_of[name])
        elif opened[name] + opening[name] < MAX_CONNECTIONS:
            opening[name] += 1
            loop.create_task(send_on_new(name, due))
        else:
            waiting[name].append(due)

    async def send_on_new(name, due) -> None:
        connection = await connect(name)
        opening[name] -= 1
        due_of[connection] = due
        connection.transport.write(request_of[name])

    for name, _, _ in streams:
        idle[name] = [await connect(name) for _ in range(CONNECTIONS)]
    finished_sending = [0]
    start = loop.time() + 0.5

    async def schedule(name, rate, offset):
        for number in range(int(rate * seconds)):
            due = start + offset + number / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            send(name, due)
        finished_sending[0] += 1
        if pending[0] == 0 and finished_sending[0] == len(streams) and not finished.done():
            finished.set_result(None)

    # the streams interleaved: the second's schedule half the first's interval after it
    first_interval = 1 / streams[0][2]
    await asyncio.gather(
        *(
            schedule(name, rate, index * first_interval / len(streams))
            for index, (name, _, rate) in enumerate(streams)
        )
    )
    try:  # a saturated server could take far longer than the run to answer what it queued: stop waiting
        await asyncio.wait_for(finished, timeout=DRAIN_SECONDS)
    except TimeoutError:
        for name in results:
            unanswered = sum(1 for connection in due_of if connection in idle_or_busy[name]) + len(
                waiting[name]
            )
            results[name][1][f"no answer {DRAIN_SECONDS} s after the run"] = unanswered
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    answers = {
        name: (latencies, answers, str(allowed[0])) for name, (latencies, answers, allowed) in results.items()
    }
    out.put((answers, cpu.ru_utime + cpu.ru_stime, opened, slow))


def drive_in_process(port: int, streams: list[tuple[str, bytes, float]], seconds: float):
    """drive() in a process of its own (the load generator is a second process, as a client would be)."""
    out = multiprocessing.get_context("spawn").Queue()
    driver = multiprocessing.get_context("spawn").Process(target=drive, args=(port, streams, seconds, out))
    driver.start()
    answered = out.get()
    driver.join()
    return answered


def alternate(port: int, token: str, check: bytes, *, count: int) -> dict[str, list[float]]:
    """`count` guard checks and `count` trivial requests, one at a time, alternating: their service
    times without queueing behind each other (the rates above measure them under load)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: dict[str, list[float]] = {"check": [], "whoami": [], "teams": []}
    for _ in range(count):
        for name, method, path, body in (
            ("check", "POST", "/api/v1/guard/check", check),
            ("whoami", "GET", TRIVIAL["whoami"], None),
            ("teams", "GET", TRIVIAL["teams"], None),
        ):
            sent = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            connection.getresponse().read()
            times[name].append(time.perf_counter() - sent)
    return times


TRIVIAL = {"whoami": "/api/v1/whoami", "teams": "/api/v1/teams/support"}


def raw_request(method: str, path: str, token: str, body: bytes | None) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n"
    )
    return head.encode() + (body or b"")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
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


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(master: int, url: str) -> dict[str, float]:
    """CPU seconds so far of the web server (main process and workers), the database's backends, and the
    whole machine (busy)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    with psycopg.connect(url, autocommit=True) as connection:
        backends = [
            pid
            for (pid,) in connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    busy = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return {
        "workers": {int(pid): _process_cpu(int(pid)) for pid in [*children, master]},
        "backends": {pid: _process_cpu(pid) for pid in backends},
        "machine": {0: (sum(busy) - busy[3] - busy[4]) / os.sysconf("SC_CLK_TCK")},
        "clock": {0: time.monotonic()},
    }


def cpu_spent(before: dict, after: dict, part: str) -> float:
    """CPU seconds of a part between two cpu_seconds (a process that began in between counts whole)."""
    return sum(seconds - before[part].get(pid, 0.0) for pid, seconds in after[part].items())


def server_command(args, port: int) -> list[str]:
    """The web server finops serves with (granian, as `finops up` runs it: supervisor.web_command, its
    access log off), or gunicorn's threaded workers for comparison: the same WSGI application."""
    if args.server == "granian":
        return supervisor.web_command(
            port=port, workers=args.workers, threads=args.threads, access_log=False, log_level="warning"
        )
    return [
        sys.executable, "-m", "gunicorn", "finops.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning",
        "--keep-alive", "30",
    ]  # fmt: skip


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
    parser.add_argument("--rate", type=float, default=500, help="guard checks/s")
    # finops up's web server by default (finops.core.supervisor), as a user runs it
    parser.add_argument("--workers", type=int, default=supervisor.WEB_WORKERS)
    parser.add_argument("--threads", type=int, default=supervisor.WEB_THREADS)
    parser.add_argument("--calls", type=int, default=50_000, help="calls in the ledger before the run")
    parser.add_argument("--sequential", type=int, default=500, help="requests of each, one at a time")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of the same load before the timed run, not timed (every server thread's first "
        "request opens its database connection)",
    )
    parser.add_argument("--trivial", choices=sorted(TRIVIAL), default="whoami", help="the endpoint beside it")
    parser.add_argument(
        "--server",
        choices=["granian", "gunicorn"],
        default="granian",
        help="granian: finops's own; gunicorn (threaded workers, kept alive 30 s) to compare, if installed",
    )
    parser.add_argument(
        "--trivial-rate",
        type=float,
        default=100,
        help="requests/s of the trivial endpoint: a probe of the same server beside the load under test "
        "(issue 8 measures the guard check at 500/s and the trivial endpoint side by side in the same run)",
    )
    args = parser.parse_args()
    if args.server == "gunicorn" and importlib.util.find_spec("gunicorn") is None:
        parser.error("--server gunicorn: gunicorn is not installed here; pip install gunicorn")
    trivial_rate = args.trivial_rate
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
    limit = ESTIMATE_USD * int((args.rate * (args.warmup + args.seconds) + args.sequential) / 2)
    server = None
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
        server = subprocess.Popen(server_command(args, port), env=env, cwd=ROOT)
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
            f"== {args.seconds:.0f} s: guard checks at {args.rate:.0f}/s and GET {TRIVIAL[args.trivial]} at "
            f"{trivial_rate:.0f}/s beside them "
            f"({args.workers} {args.server} workers x {args.threads} threads, {os.cpu_count()} cores)"
        )
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")  # nothing left for autovacuum to do during the run
        time.sleep(2)  # and every earlier backend's statistics flushed
        seq_before, idx_before = calls_scans(url)
        sequential = alternate(port, token, check, count=args.sequential)
        streams = [
            ("guard check", raw_request("POST", "/api/v1/guard/check", token, check), args.rate),
            ("trivial", raw_request("GET", TRIVIAL[args.trivial], token, None), trivial_rate),
        ]
        if args.warmup:
            say(f"== {args.warmup:.0f} s of warm-up at the same rates (not timed)")
            drive_in_process(port, streams, args.warmup)
        cpu_before = cpu_seconds(server.pid, url)
        answered, driver_cpu, connections, slow = drive_in_process(port, streams, args.seconds)
        results = {
            name: (latencies, answers, Decimal(allowed))
            for name, (latencies, answers, allowed) in answered.items()
        }
        cpu_after = cpu_seconds(server.pid, url)
        time.sleep(1.5)  # statistics reach pg_stat_user_tables within a second
        seq_after, idx_after = calls_scans(url)
        say("")
        guard, trivial = results["guard check"], results["trivial"]
        say(f"{'':28}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'requests':>10}  answers")
        for name, (latencies, answers, _) in (
            ("guard check", guard),
            (f"GET {TRIVIAL[args.trivial]}", trivial),
        ):
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
                f"{percentile(sequential['check'], q) - percentile(sequential[args.trivial], q):9.2f}"
                for q in (0.5, 0.95, 0.99)
            )
            + f"   guard minus trivial ({args.sequential} each); p50/p99 ms: "
            + ", ".join(
                f"{name} {percentile(times, 0.5):.2f}/{percentile(times, 0.99):.2f}"
                for name, times in sequential.items()
            )
        )
        windows = collections.Counter(int(due // WINDOW_SECONDS) for due in slow)
        worst = windows.most_common(1)[0] if windows else (0, 0)
        answers_count = len(guard[0]) + len(trivial[0])
        say(
            f"answers over {SLOW_SECONDS * 1000:.0f} ms               {len(slow):,} of {answers_count:,} "
            f"({len(slow) / answers_count:.2%}), due in {len(windows)} of {int(args.seconds // WINDOW_SECONDS)} "
            f"{WINDOW_SECONDS}-s windows; the worst window held {worst[1]:,} (from {worst[0] * WINDOW_SECONDS} s)"
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
        requests = answers_count
        wall = cpu_spent(cpu_before, cpu_after, "clock")  # the schedule, and the wait for its last answers
        workers, backends = (
            cpu_spent(cpu_before, cpu_after, "workers"),
            cpu_spent(cpu_before, cpu_after, "backends"),
        )
        machine = cpu_spent(cpu_before, cpu_after, "machine")
        say(
            f"CPU over the timed run ({wall:.0f} s, {os.cpu_count()} cores = {wall * os.cpu_count():.0f} core-s), "
            f"per answered request: "
            f"{args.server} {workers:.1f} s ({workers / requests * 1e6:.0f} µs/request), PostgreSQL backends "
            f"{backends:.1f} s ({backends / requests * 1e6:.0f} µs/request), load generator {driver_cpu:.1f} s "
            f"({driver_cpu / requests * 1e6:.0f} µs/request); the machine was busy {machine:.1f} core-s "
            f"({machine / (wall * os.cpu_count()):.0%}), {max(0.0, machine - workers - backends - driver_cpu):.1f} of "
            f"them other processes; connections opened {connections}"
        )
        if reserved > limit:
            raise SystemExit("allowed spend passed the limit")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        scratch.drop()


if __name__ == "__main__":
    main()
