"""`restrict(principal, action)` of every team-owned model returns exactly the rows SPEC.md's roles allow,
for each kind of principal, with data in two teams (and rows of no team where a model allows them)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count

import pytest
from django.apps import apps

from finops.accounts.models import ApiToken, Membership, OrgRole, Team, TeamRole, User
from finops.accounts.querysets import RestrictedQuerySet
from finops.accounts.services import api_token_create
from finops.ledger.models import Agent, Call, DailyRollup, EventKey, Task
from ingest.connectors.models import Connector, ConnectorRun, StatementLine
from ingest.connectors.services import connector_create
from ingest.models import ImportJob, QuarantinedRow
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory

ALL = "all"  # every row, rows of no team included
TEAM_ROLES = [TeamRole.SRE, TeamRole.TECH_LEAD, TeamRole.PM, TeamRole.ML, TeamRole.VIEWER]

# the teams each principal may see ("view") and write data for ("change"): SPEC.md's roles table
VIEW: dict[str, object] = {
    "superuser": ALL,
    "admin": ALL,
    "finops": ALL,
    **{f"{role} of a": {"a"} for role in TEAM_ROLES},
    "org-wide token": ALL,
    "token of a": {"a"},
    "read-only token of a": {"a"},
    "read-only org-wide token": ALL,
    "anonymous": set(),
}
CHANGE: dict[str, object] = {
    "superuser": ALL,
    "admin": ALL,
    "finops": ALL,
    **{f"{role} of a": {"a"} for role in TEAM_ROLES if role != TeamRole.VIEWER},
    f"{TeamRole.VIEWER} of a": set(),
    "org-wide token": ALL,
    "token of a": {"a"},
    "read-only token of a": set(),
    "read-only org-wide token": set(),
    "anonymous": set(),
}


def _event(team: str, number: int) -> dict:
    return {
        "event_id": f"{team}-{number}",
        "timestamp": "2026-11-02T10:00:00Z",
        "team": team,
        "agent": "bot",
        "task_id": f"run-{team}",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"uncached_input": 100, "output": 1},
    }


_numbers = count()


def person(**fields) -> User:
    # an unusable password, stored as is: hashing one (a second each) would be most of this file's time
    return User.objects.create(username=f"person-{next(_numbers)}", password="!", **fields)


@pytest.fixture
def world(db):
    """Data in teams a and b (and of no team), and one principal of each kind."""
    team_a, team_b = TeamFactory(slug="a"), TeamFactory(slug="b")
    events_ingest(
        raw_events=[_event(team, n) for team in ("a", "b") for n in range(2)], principal=None, source="t"
    )
    for team in (team_a, team_b, None):
        QuarantinedRow.objects.create(source="t", team=team, payload={}, errors={"x": ["bad"]})
    members = {
        f"{role} of a": MembershipFactory(team=team_a, role=role, user=person()).user for role in TEAM_ROLES
    }
    b_member = MembershipFactory(team=team_b, role=TeamRole.SRE, user=person()).user
    principals = {
        "superuser": person(is_superuser=True),
        "admin": person(org_role=OrgRole.ADMIN),
        "finops": person(org_role=OrgRole.FINOPS),
        **members,
        "org-wide token": api_token_create(name="org", scopes=["ingest", "read"])[0],
        "token of a": api_token_create(name="a", scopes=["ingest", "read"], team=team_a)[0],
        "read-only token of a": api_token_create(name="a-read", scopes=["read"], team=team_a)[0],
        "read-only org-wide token": api_token_create(name="org-read", scopes=["read"])[0],
        "anonymous": None,
    }
    api_token_create(name="b", scopes=["ingest"], team=team_b)
    jobs = {
        "a": ImportJob.objects.create(created_by=members["sre of a"], file_name="a.jsonl", stored_path="/a"),
        "b": ImportJob.objects.create(created_by=b_member, file_name="b.jsonl", stored_path="/b"),
    }
    connector = connector_create(kind="openai_costs", name="costs", credentials={"api_key": "k"})
    ConnectorRun.objects.create(connector=connector)
    StatementLine.objects.create(
        source=connector.source,
        connector=connector,
        provider="openai",
        kind="cost",
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        period_end=datetime(2026, 11, 2, tzinfo=UTC),
        amount=Decimal("1.5"),
        pulled_at=datetime(2026, 11, 3, tzinfo=UTC),
    )
    return {"teams": {"a": team_a.pk, "b": team_b.pk}, "principals": principals, "jobs": jobs}


def _team_ids(allowed, teams: dict[str, int]):
    return ALL if allowed == ALL else {teams[slug] for slug in allowed}


def _rows_of_teams(model, field: str, allowed) -> Counter:
    """The model's rows (by team id) a principal allowed these team ids should get, read unrestricted."""
    return Counter(
        team_id
        for team_id in model.objects.values_list(field, flat=True)
        if allowed == ALL or team_id in allowed
    )


TEAM_OWNED = [
    (Team, "pk"),
    (Agent, "team_id"),
    (Task, "team_id"),
    (Call, "team_id"),
    (DailyRollup, "team_id"),
    (EventKey, "team_id"),
    (QuarantinedRow, "team_id"),
]


@pytest.mark.parametrize(("model", "field"), TEAM_OWNED, ids=[model.__name__ for model, _ in TEAM_OWNED])
def test_team_owned_rows_follow_the_roles(world, model, field):
    teams = world["teams"]
    assert {team_id for team_id in model.objects.values_list(field, flat=True)} >= set(teams.values())
    for action, table in (("view", VIEW), ("change", CHANGE)):
        for name, principal in world["principals"].items():
            expected = _rows_of_teams(model, field, _team_ids(table[name], teams))
            got = Counter(model.objects.restrict(principal, action).values_list(field, flat=True))
            assert got == expected, f"{model.__name__} {action} by {name}"


@pytest.mark.parametrize("model", [Membership, ApiToken])
def test_memberships_and_tokens_are_seen_by_team_and_changed_by_org_admins_only(world, model):
    teams = world["teams"]
    for name, principal in world["principals"].items():
        expected_view = _rows_of_teams(model, "team_id", _team_ids(VIEW[name], teams))
        assert (
            Counter(model.objects.restrict(principal).values_list("team_id", flat=True)) == expected_view
        ), name
        may_administer = name in {"superuser", "admin"}
        expected_change = model.objects.count() if may_administer else 0
        assert model.objects.restrict(principal, "change").count() == expected_change, name


def test_import_jobs_belong_to_their_creator_and_org_roles_see_them_all(world):
    jobs, everything = world["jobs"], {job.pk for job in world["jobs"].values()}
    org_roles = {"superuser", "admin", "finops"}  # tokens upload nothing, so they see no job
    for name, principal in world["principals"].items():
        own = {jobs["a"].pk} if name == "sre of a" else set()
        for action in ("view", "change"):
            got = set(ImportJob.objects.restrict(principal, action).values_list("pk", flat=True))
            assert got == (everything if name in org_roles else own), f"{action} by {name}"


@pytest.mark.parametrize("model", [StatementLine, Connector, ConnectorRun])
def test_org_billing_data_is_for_org_roles_and_org_wide_tokens(world, model):
    sees = {"superuser", "admin", "finops", "org-wide token", "read-only org-wide token"}
    changes = {"superuser", "admin", "finops"}
    assert model.objects.count() == 1
    for name, principal in world["principals"].items():
        assert model.objects.restrict(principal).count() == (1 if name in sees else 0), f"view by {name}"
        assert model.objects.restrict(principal, "change").count() == (1 if name in changes else 0), name


def test_an_unknown_action_is_an_error(world):
    with pytest.raises(ValueError, match="action"):
        Agent.objects.restrict(world["principals"]["admin"], "delete")


def team_owned_models() -> list:
    """Every model of finops, ingest and dashboard with a foreign key to Team (and Team itself)."""
    return [
        model
        for model in apps.get_models()
        if model.__module__.split(".")[0] in {"finops", "ingest", "dashboard"}
        and (
            model is Team
            or any(field.related_model is Team for field in model._meta.fields if field.is_relation)
        )
    ]


def test_every_team_owned_model_has_restrict_and_a_row_test_here():
    models = team_owned_models()
    assert Agent in models and QuarantinedRow in models
    lacking = [
        model.__name__ for model in models if not isinstance(model._default_manager.all(), RestrictedQuerySet)
    ]
    assert lacking == [], "give these models a restricting manager (finops.accounts.querysets)"
    tested = {model for model, _ in TEAM_OWNED} | {Membership, ApiToken}
    untested = sorted(model.__name__ for model in models if model not in tested)
    assert untested == [], "add these models to TEAM_OWNED (or a test of their own rule) here"
