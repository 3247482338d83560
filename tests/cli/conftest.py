"""Running `finops` commands in-process (call_command) and as a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.db import connection

from finops.embedded import database_url


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
    environment = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}

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
