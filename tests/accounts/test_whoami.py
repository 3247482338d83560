"""GET /api/v1/whoami: a client checks which credentials it holds."""

from __future__ import annotations

from rest_framework.test import APIClient

from finops.accounts.services import api_token_create
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def test_a_team_token_is_named_with_its_team_and_scopes(db):
    support = TeamFactory(slug="support")
    _, secret = api_token_create(name="gateway", scopes=["read", "ingest"], team=support)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for query in ({}, {"ignored": "1"}):  # the short path, and the view (it takes no query)
        response = client.get("/api/v1/whoami", query)
        assert response.status_code == 200
        assert response.json() == {
            "kind": "token",
            "name": "gateway",
            "team": "support",
            "scopes": ["ingest", "read"],
            "org_role": None,
            "teams": [],
        }


def test_a_person_is_named_with_their_teams_and_roles(db):
    person = UserFactory(username="sam")
    MembershipFactory(user=person, team=TeamFactory(slug="support"), role="sre")
    MembershipFactory(user=person, team=TeamFactory(slug="billing"), role="viewer")
    TeamFactory(slug="other")
    client = APIClient()
    client.force_login(person)
    answer = client.get("/api/v1/whoami").json()
    assert answer["kind"] == "person" and answer["name"] == "sam" and answer["org_role"] is None
    assert answer["teams"] == [{"team": "billing", "role": "viewer"}, {"team": "support", "role": "sre"}]


def test_an_unknown_token_and_nobody_are_401(db):
    client = APIClient()
    assert client.get("/api/v1/whoami").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer fo_" + "x" * 40)
    response = client.get("/api/v1/whoami")
    assert response.status_code == 401
    assert "Unknown or revoked API token" in response.content.decode()
