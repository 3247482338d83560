"""Checks on the project as a whole: migrations match the models, Django's checks, the import rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    # exits with SystemExit(1) when a migration is missing
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_django_system_checks_pass():
    call_command("check", fail_level="WARNING")


def test_the_domain_does_not_import_the_edges():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
