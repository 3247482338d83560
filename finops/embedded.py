"""The embedded PostgreSQL server used when no DATABASE_URL is given (laptops, first runs, tests).

The `pgserver` package ships a real PostgreSQL binary; we keep its data under the finops data folder so
that one folder holds everything a local install owns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

logger = logging.getLogger(__name__)

DATABASE_NAME = "finops"
SUPERUSER = "postgres"  # pgserver's initdb user, trusted on the local socket
POSTMASTER_SOCKET_LINE = 4
CREATE_DATABASE_LOCK = "finops create database"


def data_dir() -> Path:
    """The folder that holds the embedded database, the local broker queue and the beat schedule."""
    configured = os.environ.get("FINOPS_DATA_DIR")
    path = Path(configured).expanduser() if configured else Path.home() / ".local" / "share" / "finops"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def pgdata_dir(*, root: Path | None = None) -> Path:
    """The embedded server's data folder (not created here: the server creates it when first started)."""
    return (root or data_dir()) / "pg"


def postgres_url(*, root: Path | None = None) -> str:
    """The URL of the finops database on the embedded server under `root/pg`, computed without starting
    it: what `ensure_postgres` answers. The server listens on a unix socket in its socket folder, which
    it names in postmaster.pid once started; before that, pgdata itself (pgserver's first choice, used
    unless the path is too long for a socket)."""
    pgdata = pgdata_dir(root=root)
    socket_dir = pgdata
    with contextlib.suppress(OSError, IndexError):
        # postmaster.pid lines: pid, pgdata, start time, port, socket folder, ...
        socket_dir = Path(
            (pgdata / "postmaster.pid").read_text().splitlines()[POSTMASTER_SOCKET_LINE].strip() or pgdata
        )
    return f"postgresql://{SUPERUSER}:@/{DATABASE_NAME}?host={socket_dir}"


def ensure_postgres(*, root: Path | None = None) -> str:
    """Start (or reuse) the embedded server under `root/pg`, with its finops database, and return the
    database's URL. Only the commands and the test bootstrap that need the server call this."""
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver  # imported here: only needed without DATABASE_URL
    import psycopg

    pgdata = pgdata_dir(root=root)
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        # two commands starting together on a fresh folder: one creates the database, the other finds it
        connection.execute("SELECT pg_advisory_lock(hashtext(%s))", [CREATE_DATABASE_LOCK])
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            logger.info("creating database %s in %s", DATABASE_NAME, pgdata)
            connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server.get_uri(DATABASE_NAME)


def stop_postgres(*, root: Path | None = None) -> None:
    """Stop the embedded server (used by `finops up` on shutdown)."""
    import subprocess

    from pgserver._commands import pg_ctl

    pgdata = pgdata_dir(root=root)
    if not (pgdata / "postmaster.pid").exists():
        return
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        logger.warning("embedded PostgreSQL in %s was not running", pgdata)


def database_settings(url: str) -> dict:
    """Django DATABASES entry for a postgres:// URL (host may be a socket folder in ?host=)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or parsed.hostname or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": query,
        # a server thread keeps its connection ten minutes (checked before reuse): each new one costs a
        # backend start and the guard check's statement and functions prepared again, a stall of tens of
        # ms for the requests behind it, which at 60 s came eight times a minute (bench/guard.py)
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }


def database_url(settings_dict: dict) -> str:
    """The postgres:// URL of a Django DATABASES entry: the inverse of database_settings (a socket
    folder as host goes in ?host=), for child processes that must reach the same database."""
    user = quote(settings_dict["USER"] or "", safe="")
    password = quote(settings_dict["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict["HOST"] or ""
    query = dict(settings_dict.get("OPTIONS") or {})
    if host.startswith("/"):
        query["host"], host = host, ""
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    suffix = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{credentials}{host}{port}/{quote(settings_dict['NAME'])}{suffix}"
