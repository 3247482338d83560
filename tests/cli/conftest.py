"""Running `finops` commands in-process (call_command) and as a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from django.core.management import call_command
from django.db import connection


def database_url_for(settings_dict: dict) -> str:
    """A postgres:// URL for a Django DATABASES entry (the embedded server's host is a socket folder)."""
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


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


def run_command(*args: str) -> Ran:
    """call_command with captured output; SystemExit becomes the exit code, as in a shell."""
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=stdout, stderr=stderr)
    except SystemExit as exit:
        return Ran(exit_code=int(exit.code or 0), stdout=stdout.getvalue(), stderr=stderr.getvalue())
    return Ran(exit_code=0, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture
def finops_process(db):
    """finops_process(*args) runs `python -m finops.cli ARGS` against the test database."""
    environment = {**os.environ, "DATABASE_URL": database_url_for(connection.settings_dict)}

    def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "finops.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**environment, **(env or {})},
            timeout=120,
        )

    return run
