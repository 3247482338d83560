"""A cheap guard on the view and API modules: no token/user distinction by type outside finops.accounts,
and no read of a restricted model that does not go through `restrict` (or a TeamScopedViewSet)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.apps import apps

from finops.accounts.models import User
from finops.accounts.querysets import RestrictedQuerySet
from finops.api.viewsets import TeamScopedViewSet
from finops.ledger.models import Agent

ROOT = Path(__file__).resolve().parents[2]
VIEW_MODULES = {"views.py", "api.py", "viewsets.py", "permissions.py"}


def view_modules() -> list[Path]:
    return sorted(
        path
        for package in ("finops", "ingest", "dashboard")
        for path in (ROOT / package).rglob("*.py")
        if path.name in VIEW_MODULES and "accounts" not in path.relative_to(ROOT).parts[:2]
    )


def restricted_model_names() -> list[str]:
    return sorted(
        model.__name__
        for model in apps.get_models()
        if isinstance(model._default_manager.all(), RestrictedQuerySet)
    )


def findings(source: str, *, model_names: list[str]) -> list[str]:
    """Lines that tell tokens from people by type, or read a restricted model around `restrict`.
    `queryset = ...` (a TeamScopedViewSet's, which it restricts) and `.objects.create(` are allowed."""
    by_type = re.compile(r"isinstance\([^)]*ApiToken")
    unrestricted = re.compile(rf"\b(?:{'|'.join(model_names)})\.objects\.(?!restrict\(|create\()")
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if by_type.search(code) or (unrestricted.search(code) and not code.strip().startswith("queryset =")):
            found.append(f"{number}: {line.strip()}")
    return found


def test_the_guard_finds_what_it_is_for():
    names = restricted_model_names()
    assert {"Agent", "Call", "ImportJob", "StatementLine", "Team"} <= set(names)
    bad = (
        "if isinstance(request.auth, ApiToken):\n"
        "    rows = Agent.objects.filter(team_id=1)\n"
        "job = ImportJob.objects.get(pk=1)\n"
    )
    good = (
        "rows = Agent.objects.restrict(principal).filter(name='x')\n"
        "    queryset = Agent.objects.select_related('team')\n"
        "ImportJob.objects.create(file_name='a')\n"
    )
    assert len(findings(bad, model_names=names)) == 3
    assert findings(good, model_names=names) == []


def test_view_and_api_modules_read_team_data_only_through_restrict():
    modules = view_modules()
    assert ROOT / "ingest" / "views.py" in modules and ROOT / "finops" / "api" / "viewsets.py" in modules
    names = restricted_model_names()
    problems = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if (found := findings(path.read_text(), model_names=names))
    }
    assert problems == {}


def test_a_scoped_viewset_must_read_a_restricting_queryset():
    with pytest.raises(TypeError, match="RestrictedQuerySet"):

        class Unscoped(TeamScopedViewSet):
            queryset = User.objects.all()  # a model without restrict

    class Scoped(TeamScopedViewSet):
        queryset = Agent.objects.all()

    assert Scoped.queryset.model is Agent
