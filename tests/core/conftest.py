"""Helpers for tests that run real processes: a Celery worker, `finops up`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import psutil

from finops import embedded


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
