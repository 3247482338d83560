"""The admin shows a team member (staff, to change agent settings) nothing of the teams they are not in."""

from __future__ import annotations

import pytest
from django.test import Client

from finops.accounts.models import OrgRole, TeamRole
from finops.accounts.services import api_token_create
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

PAGES = [
    "/admin/",
    "/admin/accounts/team/",
    "/admin/accounts/apitoken/",
    "/admin/accounts/user/",
    "/admin/ledger/agent/",
    "/admin/ledger/task/",
]


@pytest.fixture
def other_team(db):
    team = TeamFactory(slug="zz-other-team", name="Other Team")
    AgentFactory(team=team, name="their-agent")
    api_token_create(name="their-token", scopes=["read"], team=team)
    MembershipFactory(user=UserFactory(username="their-member"), team=team)
    return team


def test_a_team_member_in_the_admin_sees_no_other_team(other_team):
    pm = UserFactory(is_staff=True)
    MembershipFactory(user=pm, team=TeamFactory(slug="support"), role=TeamRole.PM)
    client = Client()
    client.force_login(pm)

    for path in PAGES:
        response = client.get(path)
        assert response.status_code in (200, 403), path
        page = response.content.decode()
        for secret in ("zz-other-team", "Other Team", "their-token", "their-member"):
            assert secret not in page, (path, secret)
    assert client.get(f"/admin/accounts/team/{other_team.pk}/change/").status_code == 302


def test_org_roles_still_see_every_team_in_the_admin(other_team):
    client = Client()
    client.force_login(UserFactory(org_role=OrgRole.FINOPS))

    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
    assert "zz-other-team" in client.get("/admin/accounts/team/").content.decode()
    assert "their-token" in client.get("/admin/accounts/apitoken/").content.decode()
    assert "zz-other-team" in client.get("/admin/ledger/agent/").content.decode()


def test_the_token_list_does_not_query_per_token(db, django_assert_max_num_queries):
    admin_user = UserFactory(org_role=OrgRole.ADMIN)
    for number in range(20):
        api_token_create(name=f"token-{number}", scopes=["read"], team=TeamFactory(), created_by=admin_user)
    client = Client()
    client.force_login(admin_user)

    with django_assert_max_num_queries(12):
        assert client.get("/admin/accounts/apitoken/").status_code == 200
