"""Real server processes for the guardrails: the web server (granian, as finops serves itself) on the
test database, started by the test."""

from __future__ import annotations

import pytest
from django.db import connection

from finops.embedded import database_url
from tests.core.conftest import WebServer, process_group_stop, web_server_start


@pytest.fixture
def start_server(transactional_db, tmp_path):
    """start_server(workers=4, threads=4) -> WebServer: finops served on a free port, on the test database
    (it sees committed rows only). Stopped, with its whole process group, after the test."""
    servers: list[WebServer] = []

    def start(*, workers: int = 4, threads: int = 4) -> WebServer:
        server = web_server_start(
            database_url=database_url(connection.settings_dict),
            folder=tmp_path,
            workers=workers,
            threads=threads,
            env={"SECRET_KEY": "guardrails-test"},
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        process_group_stop(server.process)
    # ledger_call is partitioned and unmanaged: the transactional flush does not empty it
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_call")
