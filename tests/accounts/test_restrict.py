"""`restrict(principal, action)` of every team-owned model returns exactly the rows SPEC.md's roles allow,
for each kind of principal, with data in two teams (and rows of no team where a model allows them)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.apps import apps

from finops.accounts.models import ApiToken, Membership, OrgRole, Team, TeamRole, User
from finops.accounts.querysets import RestrictedQuerySet
from finops.accounts.services import api_token_create
from finops.alerts.models import Alert, AlertChannel, AlertRule, Delivery, Silence
from finops.alerts.services import channel_create, rule_create, silence_create
from finops.audit.models import AuditEntry
from finops.audit.services import audit_record
from finops.bills.models import Adjustment, ClosedMonthRollup
from finops.guardrails.models import Allowance, AllowanceUsage, Reservation
from finops.guardrails.services import allowance_create
from finops.ledger.models import (
    Agent,
    BreakdownRollup,
    Call,
    DailyRollup,
    EventKey,
    PromptVersionDailyRollup,
    PromptVersionRollup,
    RecentRollup,
    Task,
    TaskDailyRollup,
)
from finops.ledger.services import task_outcomes_record
from finops.pricing.models import RepriceDelta, RepriceRun
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
    "manage token of a": {"a"},
    "manage org-wide token": ALL,
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
    "manage token of a": set(),  # manage is not ingest: it sends no data
    "manage org-wide token": set(),
    "anonymous": set(),
}
# the teams whose guardrails (allowances) each principal may change: sre and tech_lead of the team, the
# admin and finops roles everywhere, `manage` tokens for their team (SPEC.md, roles and "Guardrails")
GUARD: dict[str, object] = {
    "superuser": ALL,
    "admin": ALL,
    "finops": ALL,
    **{f"{role} of a": {"a"} for role in (TeamRole.SRE, TeamRole.TECH_LEAD)},
    **{f"{role} of a": set() for role in (TeamRole.PM, TeamRole.ML, TeamRole.VIEWER)},
    "org-wide token": set(),
    "token of a": set(),
    "read-only token of a": set(),
    "read-only org-wide token": set(),
    "manage token of a": {"a"},
    "manage org-wide token": ALL,
    "anonymous": set(),
}


def _event(team: str, number: int) -> dict:
    return {
        "event_id": f"{team}-{number}",
        # recent, so the minute rollup holds it too; a prompt version, so the version rollup does
        "timestamp": (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "prompt_version": "bot@1",
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
    # a recent call with a prompt version per team: the alert rollups hold rows of each team too
    recent = [
        {**_event(team, 9), "timestamp": datetime.now(UTC).isoformat(), "prompt_version": "p@1"}
        for team in ("a", "b")
    ]
    events_ingest(raw_events=recent, principal=None, source="t")
    # each team's run ends: the per-day task rollup holds a row of each team
    task_outcomes_record(
        outcomes=[
            {
                "team": team,
                "agent": Agent.objects.get(team=team, name="bot"),
                "task_id": f"run-{team.slug}",
                "status": "success",
                "started_at": datetime.now(UTC) - timedelta(hours=2),
                "ended_at": datetime.now(UTC) - timedelta(minutes=30),
            }
            for team in (team_a, team_b)
        ]
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
        "manage token of a": api_token_create(name="a-manage", scopes=["manage"], team=team_a)[0],
        "manage org-wide token": api_token_create(name="org-manage", scopes=["manage"])[0],
        "anonymous": None,
    }
    api_token_create(name="b", scopes=["ingest"], team=team_b)
    api_token_create(name="b-manage", scopes=["manage", "read"], team=team_b)
    # an allowance per team (each with its counter, and audited), a reservation against each, and an
    # audit entry of no team
    for team in (team_a, team_b):
        allowance = allowance_create(
            principal=principals["admin"], team=team, window="day", limit_usd=Decimal("25")
        )
        Reservation.objects.create(
            allowance=allowance,
            team=team,
            estimated_usd=Decimal("0.1"),
            created_at=datetime(2026, 11, 2, 10, tzinfo=UTC),
            expires_at=datetime(2026, 11, 2, 10, 5, tzinfo=UTC),
        )
    audit_record(
        principal=principals["finops"],
        team_id=None,
        object_type="month",
        object_id="2026-11",
        action="update",
        before={"closed": False},
        after={"closed": True},
    )
    # alerting of each team and of the organisation (team null): a channel, a rule using it, an alert of
    # the rule with a delivery to the channel, and a silence
    for team in (team_a, team_b, None):
        channel, _ = channel_create(
            principal=principals["admin"], team=team, kind="webhook", target="https://example.com/hook"
        )
        rule = rule_create(
            principal=principals["admin"],
            name="forecast",
            team=team,
            kind="forecast",
            value=Decimal(100),
            channels=[channel],
        )
        moment = datetime(2026, 11, 2, 10, tzinfo=UTC)
        alert = Alert.objects.create(
            rule=rule, team=team, subject="team", state="firing", started_at=moment, last_evaluated_at=moment
        )
        Delivery.objects.create(alert=alert, channel=channel, team=team, event="alert.firing", payload={})
        silence_create(principal=principals["admin"], team=team, ends_at=datetime(2099, 1, 1, tzinfo=UTC))
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
    Adjustment.objects.create(
        month=date(2026, 10, 1), shown_in=date(2026, 11, 1), reason="reprice", team=team_a, provider="openai",
        model="gpt-4o", day=date(2026, 10, 5), usd=Decimal("-0.5"),
    )  # fmt: skip
    ClosedMonthRollup.objects.create(
        month=date(2026, 10, 1), day=date(2026, 10, 5), team=team_a, agent=Agent.objects.filter(team=team_a).first(),
        provider="openai", model="gpt-4o", calls=1, cost_usd=Decimal("2.5"),
    )  # fmt: skip
    run = RepriceRun.objects.create(trigger="discount 1 created")
    RepriceDelta.objects.create(
        run=run, team=team_a, provider="openai", model="gpt-4o", day=date(2026, 11, 2), before_usd=Decimal(2),
        after_usd=Decimal(1), calls=1,
    )  # fmt: skip
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
    (RecentRollup, "team_id"),
    (PromptVersionRollup, "team_id"),
    (PromptVersionDailyRollup, "team_id"),
    (BreakdownRollup, "team_id"),
    (TaskDailyRollup, "team_id"),
    (EventKey, "team_id"),
    (QuarantinedRow, "team_id"),
    # kept by the bulk writer and made by the guard check (scope ingest): written like the team's data
    (AllowanceUsage, "allowance__team"),
    (Reservation, "team_id"),
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


def test_allowances_are_seen_by_the_team_and_changed_by_its_guards(world):
    teams = world["teams"]
    assert set(Allowance.objects.values_list("team_id", flat=True)) == set(teams.values())
    for action, table in (("view", VIEW), ("change", GUARD)):
        for name, principal in world["principals"].items():
            expected = _rows_of_teams(Allowance, "team_id", _team_ids(table[name], teams))
            got = Counter(Allowance.objects.restrict(principal, action).values_list("team_id", flat=True))
            assert got == expected, f"Allowance {action} by {name}"


ALERTING = [AlertChannel, AlertRule, Alert, Silence, Delivery]


@pytest.mark.parametrize("model", ALERTING, ids=[model.__name__ for model in ALERTING])
def test_alerting_is_seen_by_the_team_and_changed_by_its_guards(world, model):
    # sre and tech_lead change their team's alerting (SPEC.md, roles), manage tokens too; rows of no team
    # (the organisation's) are seen and changed only by those who see every team
    teams = world["teams"]
    assert set(model.objects.values_list("team_id", flat=True)) == {*teams.values(), None}
    for action, table in (("view", VIEW), ("change", GUARD)):
        for name, principal in world["principals"].items():
            expected = _rows_of_teams(model, "team_id", _team_ids(table[name], teams))
            got = Counter(model.objects.restrict(principal, action).values_list("team_id", flat=True))
            assert got == expected, f"{model.__name__} {action} by {name}"


def test_the_audit_log_is_seen_by_team_and_changed_by_no_one(world):
    teams = world["teams"]
    assert set(AuditEntry.objects.values_list("team_id", flat=True)) == {*teams.values(), None}
    for name, principal in world["principals"].items():
        expected = _rows_of_teams(AuditEntry, "team_id", _team_ids(VIEW[name], teams))
        got = Counter(AuditEntry.objects.restrict(principal).values_list("team_id", flat=True))
        assert got == expected, f"AuditEntry view by {name}"
        assert not AuditEntry.objects.restrict(principal, "change").exists(), f"AuditEntry change by {name}"


def test_import_jobs_belong_to_their_creator_and_org_roles_see_them_all(world):
    jobs, everything = world["jobs"], {job.pk for job in world["jobs"].values()}
    org_roles = {"superuser", "admin", "finops"}  # tokens upload nothing, so they see no job
    for name, principal in world["principals"].items():
        own = {jobs["a"].pk} if name == "sre of a" else set()
        for action in ("view", "change"):
            got = set(ImportJob.objects.restrict(principal, action).values_list("pk", flat=True))
            assert got == (everything if name in org_roles else own), f"{action} by {name}"


# organisation billing data; the last two name a team (what they are about) but are not the team's
# a closed month's snapshot of the rollups names a team, but like the bill it is the organisation's
ORG_BILLING = [StatementLine, Connector, ConnectorRun, Adjustment, RepriceDelta, ClosedMonthRollup]


@pytest.mark.parametrize("model", ORG_BILLING)
def test_org_billing_data_is_for_org_roles_and_org_wide_tokens(world, model):
    sees = {
        "superuser",
        "admin",
        "finops",
        "org-wide token",
        "read-only org-wide token",
        "manage org-wide token",
    }
    changes = {"superuser", "admin", "finops"}
    assert model.objects.count() == 1
    for name, principal in world["principals"].items():
        assert model.objects.restrict(principal).count() == (1 if name in sees else 0), f"view by {name}"
        assert model.objects.restrict(principal, "change").count() == (1 if name in changes else 0), name


def test_an_unknown_action_is_an_error(world):
    with pytest.raises(ValueError, match="action"):
        Agent.objects.restrict(world["principals"]["admin"], "delete")


def team_owned_models() -> list:
    """Every model of finops, ingest and dashboard with a foreign key to Team (and Team itself), or to
    such a model (an allowance's counter belongs to the allowance's team)."""
    ours = [
        model
        for model in apps.get_models()
        if model.__module__.split(".")[0] in {"finops", "ingest", "dashboard"}
    ]
    owned = [Team]
    while True:
        more = [
            model
            for model in ours
            if model not in owned
            and any(field.related_model in owned for field in model._meta.fields if field.is_relation)
        ]
        if not more:
            return owned
        owned += more


def test_every_team_owned_model_has_restrict_and_a_row_test_here():
    models = team_owned_models()
    assert Agent in models and QuarantinedRow in models
    lacking = [
        model.__name__ for model in models if not isinstance(model._default_manager.all(), RestrictedQuerySet)
    ]
    assert lacking == [], "give these models a restricting manager (finops.accounts.querysets)"
    tested = {model for model, _ in TEAM_OWNED} | {Membership, ApiToken, Allowance, AuditEntry, *ALERTING}
    tested |= set(ORG_BILLING)
    untested = sorted(model.__name__ for model in models if model not in tested)
    assert untested == [], "add these models to TEAM_OWNED (or a test of their own rule) here"
