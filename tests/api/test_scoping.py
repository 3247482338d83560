"""A person or token that does not belong to a team gets a 404 for its data, never its numbers."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TeamRole
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory


@pytest.fixture
def two_teams(db):
    support, coding = TeamFactory(slug="support"), TeamFactory(slug="coding")
    events_ingest(
        raw_events=[
            {
                "event_id": f"{team}-{n}",
                "timestamp": "2026-11-02T10:00:00Z",
                "team": team,
                "agent": "bot",
                "provider": "openai",
                "model": "gpt-4o",
                "usage": {"uncached_input": size, "output": 1},
            }
            for team, size in (("support", 1000), ("coding", 5000))
            for n in range(3)
        ],
        principal=None,
        source="test",
    )
    return support, coding


WINDOW = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_team_bound_token_sees_only_its_team(make_api, two_teams):
    support, _ = two_teams
    api = make_api(scopes=["read"], team=support)

    assert api.get("/api/v1/kpis", team="coding", **WINDOW).status_code == 404
    assert api.get("/api/v1/kpis", team="coding", agent="bot", **WINDOW).status_code == 404
    assert api.get("/api/v1/kpis", team="no-such-team", **WINDOW).status_code == 404
    everything_it_may_see = api.get("/api/v1/kpis", **WINDOW).json()
    assert everything_it_may_see["tokens"]["uncached_input"] == 3 * 1000
    assert api.get("/api/v1/kpis", team="support", **WINDOW).json()["calls"] == 3


@pytest.mark.parametrize("role", [TeamRole.VIEWER, TeamRole.SRE, TeamRole.PM])
def test_team_member_sees_only_own_teams(two_teams, role):
    support, _ = two_teams
    member = MembershipFactory(team=support, role=role).user
    client = session_client(member)

    assert client.get("/api/v1/kpis", {"team": "coding", **WINDOW}).status_code == 404
    assert client.get("/api/v1/kpis", WINDOW).json()["tokens"]["uncached_input"] == 3 * 1000


@pytest.mark.parametrize("org_role", [OrgRole.ADMIN, OrgRole.FINOPS])
def test_org_roles_see_every_team(two_teams, org_role):
    client = session_client(UserFactory(org_role=org_role))
    assert client.get("/api/v1/kpis", {"team": "coding", **WINDOW}).json()["calls"] == 3
    assert client.get("/api/v1/kpis", WINDOW).json()["tokens"]["uncached_input"] == 3 * 1000 + 3 * 5000


def test_a_user_without_teams_sees_nothing(two_teams):
    client = session_client(UserFactory())
    assert client.get("/api/v1/kpis", {"team": "support", **WINDOW}).status_code == 404
    assert client.get("/api/v1/kpis", WINDOW).json()["calls"] == 0


def test_read_needs_the_read_scope_and_a_login(make_api, two_teams):
    assert make_api(scopes=["ingest"]).get("/api/v1/kpis", **WINDOW).status_code == 403
    assert APIClient().get("/api/v1/kpis", WINDOW).status_code in (401, 403)


def test_kpi_query_errors_name_the_field(api):
    response = api.get("/api/v1/kpis", start="2026-11-05T00:00:00Z", end="2026-11-01T00:00:00Z")
    assert response.status_code == 400
    assert "end" in response.json()["extra"]["fields"]
    assert api.get("/api/v1/kpis", agent="bot").status_code == 400


def test_a_team_path_that_is_not_a_slug_is_a_404(api, two_teams):
    assert api.get("/api/v1/teams/support").status_code == 200
    assert api.get("/api/v1/teams/sup%00port").status_code == 404
