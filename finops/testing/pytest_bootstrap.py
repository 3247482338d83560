"""Loaded by pytest before Django settings (`-p finops.testing.pytest_bootstrap` in pyproject.toml).

Without DATABASE_URL the suite runs against its own embedded PostgreSQL under `.finops/test` in the
checkout, so a laptop with nothing installed runs the same tests CI runs against a real server. Importing
the settings starts nothing, so the server is started here, for the suite, before they are read.
"""

from __future__ import annotations

import os
from pathlib import Path

from finops import embedded

if not os.environ.get("DATABASE_URL"):
    os.environ.setdefault("FINOPS_DATA_DIR", str(Path.cwd() / ".finops" / "test"))
    embedded.ensure_postgres()
# A test database of its own per run, so two runs on one server (two checkouts, CI and a developer)
# never drop each other's database.
os.environ.setdefault("FINOPS_TEST_DATABASE", f"test_finops_{os.getpid()}")
