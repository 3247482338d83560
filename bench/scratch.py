"""What each benchmark here needs: a free port, and a database of its own for the run."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    url: str
    admin_url: str

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def scratch_database_create(*, prefix: str) -> ScratchDatabase:
    """A new database on DATABASE_URL's server, else the embedded one (FINOPS_DATA_DIR and the project
    root on sys.path must be set first); the caller drops it when the run ends."""
    from finops import embedded

    server = urlsplit(os.environ.get("DATABASE_URL") or embedded.ensure_postgres())
    name = f"{prefix}_{os.getpid()}"
    database = ScratchDatabase(
        name=name,
        url=urlunsplit(server._replace(path=f"/{name}")),
        admin_url=urlunsplit(server._replace(path="/postgres")),
    )
    with psycopg.connect(database.admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return database


def run_database(*, prefix: str, reuse: str | None) -> ScratchDatabase | None:
    """Point DATABASE_URL at a new database (returned: the caller migrates it, and drops it when the run
    ends) or, with `reuse`, at a database an earlier run kept (None)."""
    if not reuse:
        scratch = scratch_database_create(prefix=prefix)
        os.environ["DATABASE_URL"] = scratch.url
        return scratch
    from finops import embedded

    server = urlsplit(os.environ.get("DATABASE_URL") or embedded.ensure_postgres())
    os.environ["DATABASE_URL"] = urlunsplit(server._replace(path=f"/{reuse}"))
    return None
