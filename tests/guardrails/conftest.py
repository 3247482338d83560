"""Real server processes for the guardrails: gunicorn on the test database, started by the test."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from finops.embedded import database_url
from tests.core.conftest import free_port, log_tail, process_group_stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_SECONDS = 60


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _answering(port: int) -> bool:
    """Whether a worker has booted (Django loaded) and answers HTTP."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/api/v1/teams")
        return connection.getresponse().status > 0
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture
def start_server(transactional_db, tmp_path):
    """start_server(workers=4, threads=4) -> Server: gunicorn serving finops on a free port, on the test
    database (it sees committed rows only). Stopped, with its whole process group, after the test."""
    servers: list[Server] = []

    def start(*, workers: int = 4, threads: int = 4) -> Server:
        port = free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict),
            "FINOPS_DATA_DIR": str(tmp_path / "data"),
            "SECRET_KEY": "guardrails-test",
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "finops.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                    "--timeout",
                    "120",
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        server = Server(process, port, log_path)
        servers.append(server)
        wait_for(
            lambda: process.poll() is not None or _answering(port),
            timeout=SERVER_START_TIMEOUT_SECONDS,
            what="gunicorn to answer",
        )
        assert process.poll() is None, f"gunicorn exited with {process.returncode}:\n{log_tail(log_path)}"
        return server

    yield start
    for server in servers:
        process_group_stop(server.process)
    # ledger_call is partitioned and unmanaged: the transactional flush does not empty it
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_call")
