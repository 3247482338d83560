"""Teams and agents: scoped lists, and agent settings changed only by the roles SPEC.md names."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TeamRole
from finops.api.viewsets import TeamScopedViewSet
from finops.ledger.models import Agent
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory


@pytest.fixture
def agents(db):
    support, coding = TeamFactory(slug="support"), TeamFactory(slug="coding")
    return AgentFactory(team=support, name="triage"), AgentFactory(team=coding, name="reviewer")


def member_client(team, role) -> APIClient:
    client = APIClient()
    client.force_login(MembershipFactory(team=team, role=role).user)
    return client


def test_lists_show_only_visible_teams(agents, make_api):
    triage, reviewer = agents
    api = make_api(scopes=["read"], team=triage.team)
    assert [row["slug"] for row in api.get("/api/v1/teams").json()] == ["support"]
    assert [row["name"] for row in api.get("/api/v1/agents").json()] == ["triage"]
    assert api.get(f"/api/v1/agents/{reviewer.pk}").status_code == 404
    assert api.get("/api/v1/teams/coding").status_code == 404


@pytest.mark.parametrize(
    ("role", "changes", "allowed"),
    [
        (TeamRole.PM, {"cost_slo_usd": "0.30", "ideal_steps": 4}, True),
        (TeamRole.TECH_LEAD, {"ideal_steps": 6, "max_steps": 40}, True),
        (TeamRole.SRE, {"max_steps": 40, "max_cost_usd": "2.5"}, True),
        (TeamRole.SRE, {"ideal_steps": 6}, False),
        (TeamRole.TECH_LEAD, {"cost_slo_usd": "1"}, False),
        (TeamRole.ML, {"ideal_steps": 6}, False),
        (TeamRole.VIEWER, {"max_steps": 1}, False),
    ],
)
def test_agent_settings_follow_the_roles(agents, role, changes, allowed):
    triage, _ = agents
    response = member_client(triage.team, role).patch(f"/api/v1/agents/{triage.pk}", changes, format="json")

    assert response.status_code == (200 if allowed else 403), response.json()
    triage.refresh_from_db()
    for name, value in changes.items():
        stored = getattr(triage, name)
        expected = Decimal(value) if isinstance(value, str) else value
        assert (stored == expected) is allowed, name
    if not allowed:
        assert "may not change" in response.json()["message"]


def test_other_teams_agents_are_404_even_with_the_right_role(agents):
    triage, reviewer = agents
    client = member_client(triage.team, TeamRole.TECH_LEAD)
    assert client.patch(f"/api/v1/agents/{reviewer.pk}", {"ideal_steps": 1}, format="json").status_code == 404
    assert Agent.objects.get(pk=reviewer.pk).ideal_steps is None


def test_org_admin_may_change_everything_and_tokens_nothing(agents, make_api):
    triage, reviewer = agents
    admin = APIClient()
    admin.force_login(UserFactory(org_role=OrgRole.ADMIN))
    assert (
        admin.patch(f"/api/v1/agents/{reviewer.pk}", {"cost_slo_usd": "5"}, format="json").status_code == 200
    )
    token = make_api(scopes=["read", "ingest"])
    assert (
        token.client.patch(f"/api/v1/agents/{triage.pk}", {"ideal_steps": 2}, format="json").status_code
        == 403
    )


def test_a_viewset_may_not_bypass_team_scoping():
    with pytest.raises(TypeError, match="get_queryset"):

        class Leaky(TeamScopedViewSet):
            def get_queryset(self):
                return Agent.objects.all()
