"""The local stack behind `finops up`: the embedded PostgreSQL, then web, Celery worker and beat as children.

Nothing here restarts silently: a child that exits ends the whole stack with its name and exit code, and
a stop request (Ctrl-C, SIGTERM) stops every child and the embedded server before `finops up` returns.

No Django import at module level: `up_environment_prepare` runs before Django reads settings.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from finops import embedded

DEFAULT_PORT = 8000
WEB_HOST = "127.0.0.1"
WEB_WORKERS = 2
# granian's blocking threads per worker: each runs one request at a time in Python, with its own database
# connection (Django's are per thread), so a worker holds at most this many. The HTTP side (in Rust,
# outside the GIL) keeps clients' HTTP/1.1 connections open between requests, which matters because an
# agent (or its gateway) asks the guard check before every LLM call. bench/guard.py on 2 cores, guard
# checks at 500/s: 2 workers x 2 threads gave p99 4.8-7.4 ms in five 60 s runs, gunicorn's 2 x 4 threads
# 10.4 ms in the same sitting. granian's 2 x 4 was worse (16.5 ms); 1 x 2 and 1 x 4 varied between runs as
# much as 2 x 2 did, and one worker lets a slow page hold up the checks of every connection.
# granian has no keep-alive setting of its own (gunicorn's --keep-alive 30 went): a connection idle after
# an answer is closed when the next request's headers have not come within --http1-header-read-timeout,
# 30 s by default, so the same 30 s (tests/core/test_web_server.py); one that never sends a request at all
# is not timed out.
WEB_THREADS = 2
# granian starts a worker's threads past its first only when requests queue, and ends them after this long
# idle: its longest, 600 s, as long as settings' CONN_MAX_AGE keeps a connection. (At granian's default,
# 30 s, bursts of requests would open new connections over and over; and the connection of an ended thread
# is not closed at once but when Python's garbage collector gets to it.)
WEB_THREAD_IDLE_SECONDS = 600
# on SIGTERM, requests in flight get this long before granian kills the worker that runs them
WEB_STOP_TIMEOUT_SECONDS = 10
WEB_APPLICATION = "finops.wsgi:application"
WORKER_QUEUES = ("default", "ingest", "pricing", "alerts")
WEB_READY_TIMEOUT_SECONDS = 90.0
CHILD_STOP_TIMEOUT_SECONDS = 20.0
# set by `up_environment_prepare` when it started (or reused) the embedded server, so `up` stops it
OWNS_POSTGRES_ENV = "FINOPS_UP_OWNS_POSTGRES"
LOCK_FILE_NAME = "up.pid"
LOG_DIR_NAME = "logs"
BEAT_SCHEDULE_FILE_NAME = "celerybeat-schedule"


class UpError(Exception):
    """A reason `finops up` cannot start, worded with the fix."""


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def say(message: str) -> None:
    print(message, flush=True)


# --- before Django: data folder, port, embedded server ----------------------------------------------------


def up_options_parse(argv: list[str]) -> argparse.Namespace:
    """The options `up_environment_prepare` needs, read leniently (Django's parser reports bad ones)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir")
    options, _ = parser.parse_known_args(argv)
    return options


def up_environment_prepare(argv: list[str]) -> None:
    """Run by the `finops` script before Django reads settings, which read FINOPS_DATA_DIR at import: so
    --data-dir is applied first, the port is checked before anything starts, and the server is started
    here (once) and handed to settings and children as DATABASE_URL."""
    options = up_options_parse(argv)
    if options.data_dir:
        os.environ["FINOPS_DATA_DIR"] = str(Path(options.data_dir).expanduser().resolve())
    data_dir = embedded.data_dir()
    running_pid = up_lock_holder(data_dir)
    if running_pid is not None:
        raise SystemExit(up_already_running_message(data_dir, running_pid))
    port_problem = port_check(options.port)
    if port_problem:
        raise SystemExit(port_problem)
    if os.environ.get("DATABASE_URL"):
        return
    say(f"starting PostgreSQL (embedded, data in {data_dir / 'pg'})…")
    started = time.monotonic()
    os.environ["DATABASE_URL"] = embedded.ensure_postgres()
    os.environ[OWNS_POSTGRES_ENV] = "1"
    say(f"PostgreSQL up ({time.monotonic() - started:.1f} s)")


def port_check(port: int) -> str | None:
    """None if the web server can bind the port, else what is wrong and the fix."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # an option granian sets too: a port in TIME_WAIT from a previous run is free for it (granian also sets
    # SO_REUSEPORT, which this probe does not: a granian still listening on the port makes it fail)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((WEB_HOST, port))
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            return (
                f"port {port} on {WEB_HOST} is taken (another finops up or another server?). "
                f"Start on a free port instead: finops up --port {port + 1}"
            )
        raise
    finally:
        probe.close()
    return None


def up_lock_holder(data_dir: Path) -> int | None:
    """The pid of a `finops up` still running on this data folder, if any."""
    import psutil

    lock = data_dir / LOCK_FILE_NAME
    try:
        pid = int(lock.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid() or not psutil.pid_exists(pid):
        return None
    return pid


def up_already_running_message(data_dir: Path, pid: int) -> str:
    return (
        f"finops up is already running on {data_dir} (pid {pid}). Stop it first (Ctrl-C in its terminal, "
        f"or kill {pid}), or start another one with its own --data-dir"
    )


# --- the children ------------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    stopping: bool = field(default=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, env: dict[str, str], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- finops up: starting {self.name}: {' '.join(self.command)}\n".encode())
            log.flush()
            # own process group: a Ctrl-C in the terminal reaches only the supervisor, which stops
            # the children in order instead of all of them racing to exit at once
            self.process = subprocess.Popen(
                self.command,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop_begin(self) -> None:
        """Ask for a graceful stop (granian and Celery both finish in-flight work on SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stopping = True
        self.process.send_signal(signal.SIGTERM)

    def stop_finish(self, *, deadline: float) -> None:
        """Wait for the graceful stop until the deadline, then kill the whole process group."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {CHILD_STOP_TIMEOUT_SECONDS:.0f} s; killing it")
            self.process.kill()
            self.process.wait()
        # reap leftovers of the group (pool processes of a killed parent)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except FileNotFoundError:
            return ""


def web_command(
    *,
    port: int,
    host: str = WEB_HOST,
    workers: int = WEB_WORKERS,
    threads: int = WEB_THREADS,
    access_log: bool = True,
    log_level: str = "info",
) -> list[str]:
    """The web server's command line as finops serves itself: granian running finops.wsgi, its access log
    (one line per request) and its own log on stdout. `finops up`, the benchmarks and the tests that
    need a real server all start it from here."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--blocking-threads-idle-timeout",
        str(WEB_THREAD_IDLE_SECONDS),
        "--workers-kill-timeout",
        str(WEB_STOP_TIMEOUT_SECONDS),
        "--log-level",
        log_level,
        "--access-log" if access_log else "--no-access-log",
        WEB_APPLICATION,
    ]


def children_define(*, port: int, data_dir: Path) -> list[Child]:
    python = sys.executable
    logs = data_dir / LOG_DIR_NAME
    return [
        Child("web", web_command(port=port), logs / "web.log"),
        Child(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "finops",
                "worker",
                "-Q",
                ",".join(WORKER_QUEUES),
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--hostname",
                f"finops-up-{port}@%h",
            ],
            logs / "worker.log",
        ),
        Child(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "finops",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(data_dir / BEAT_SCHEDULE_FILE_NAME),
            ],
            logs / "beat.log",
        ),
    ]


def web_answers(url: str) -> int | None:
    """The HTTP status the web server answers with, or None while it does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own local URL
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


class ChildExited(Exception):  # noqa: N818 - an event the supervisor reports, named for what happened
    def __init__(self, child: Child, exit_code: int) -> None:
        super().__init__(f"{child.name} exited with code {exit_code}")
        self.child = child
        self.exit_code = exit_code


@dataclass
class Stack:
    """The running children of one `finops up`."""

    children: list[Child]

    def start(self, *, env: dict[str, str], cwd: Path) -> None:
        for child in self.children:
            child.start(env=env, cwd=cwd)

    def check(self) -> None:
        """Raise ChildExited for the first child that exited without being asked to."""
        for child in self.children:
            code = child.exit_code()
            if code is not None and not child.stopping:
                raise ChildExited(child, code)

    def wait_for_web(self, url: str, *, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            status = web_answers(url)
            if status is not None:
                return status
            time.sleep(0.3)
        raise UpError(f"the web server did not answer {url} within {timeout:.0f} s; see its log")

    def supervise(self) -> None:
        """Block until a child exits (raises ChildExited) or a signal raises StopRequested."""
        while True:
            self.check()
            time.sleep(0.5)

    def stop(self) -> None:
        running = [child for child in self.children if child.exit_code() is None]
        if running:
            say(f"stopping {', '.join(child.name for child in running)}…")
        for child in self.children:
            child.stop_begin()
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_SECONDS
        for child in self.children:
            child.stop_finish(deadline=deadline)


def signals_raise_stop() -> None:
    def handler(signal_number, _frame):
        raise StopRequested(signal_number)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def signals_hold() -> None:
    """While stopping: a second Ctrl-C must not abandon children half-stopped."""

    def handler(signal_number, _frame):
        say("still stopping; the children get SIGKILL after their timeout")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
