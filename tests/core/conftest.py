"""Helpers for tests that run real processes: a Celery worker, `finops up`, the web server."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from finops import embedded
from finops.core import supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server_data_dir(*, prefix: str) -> Iterator[Path]:
    """A fresh data folder for an embedded server of the test's own, stopped and removed afterwards. Under
    /tmp with a readable parent: as root the server runs as the `pgserver` user, which must reach it
    (pytest's own tmp folders are made private again by any pytest run starting meanwhile)."""
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    parent.chmod(0o755)
    try:
        yield parent / "data"
    finally:
        embedded.stop_postgres(root=parent / "data")
        shutil.rmtree(parent, ignore_errors=True)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open(errors="replace") as log:
            return "".join(deque(log, maxlen=lines))
    except FileNotFoundError:
        return "(no log)"


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def process_group_stop(process: subprocess.Popen, *, timeout: float = 15) -> None:
    """SIGTERM the leader, then SIGKILL its whole group if it lingers (test teardown never hangs)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class WebServer:
    """The web server as finops serves itself (supervisor.web_command), started by a test."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def web_answering(port: int) -> bool:
    """Whether a worker has booted (Django loaded) and answers HTTP."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/v1/teams")
        return connection.getresponse().status > 0
    except OSError:
        return False
    finally:
        connection.close()


def web_server_start(
    *,
    database_url: str,
    folder: Path,
    workers: int = supervisor.WEB_WORKERS,
    threads: int = supervisor.WEB_THREADS,
    env: dict[str, str] | None = None,
    command: Callable[[int], list[str]] | None = None,
) -> WebServer:
    """The web server on a free port of 127.0.0.1 and the given database, its output in a log file under
    `folder`, once it answers HTTP (its log in the failure if it exits or never answers). In a process
    group of its own: stop it with process_group_stop. `command(port)` replaces finops's own command
    line (supervisor.web_command)."""
    port = free_port()
    log_path = folder / f"web-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FINOPS_DATA_DIR": str(folder / "data"),
        "SECRET_KEY": "web-server-test",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command(port) if command else supervisor.web_command(port=port, workers=workers, threads=threads),
            env=environment,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        wait_for(
            lambda: process.poll() is not None or web_answering(port),
            timeout=WEB_START_TIMEOUT_SECONDS,
            what="the web server to answer",
        )
    except AssertionError as timeout:
        process_group_stop(process)
        raise AssertionError(f"{timeout}; its log:\n{log_tail(log_path)}") from None
    if process.poll() is not None:
        raise AssertionError(f"the web server exited with {process.returncode}:\n{log_tail(log_path)}")
    return WebServer(process, port, log_path)
