"""The quarantine API reads through restrict: "view" for the list, "change" for the replay."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TeamRole
from finops.accounts.services import api_token_create
from ingest.models import QuarantinedRow
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def bearer(*, scopes: list[str], team=None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(name='t', scopes=scopes, team=team)[1]}")
    return client


@pytest.fixture
def rows(db):
    team_a, team_b = TeamFactory(slug="a"), TeamFactory(slug="b")
    made = [
        QuarantinedRow.objects.create(source="s", team=team, payload={}, errors={"event_id": ["missing"]})
        for team in (team_a, team_b, None)
    ]
    return team_a, [row.pk for row in made]


# principal → (rows listed, rows a replay of every row takes); None: the replay is refused (403)
EXPECTED = {
    "sre of a": (1, 1),
    "viewer of a": (1, None),  # a viewer changes nothing: refused at the door
    "token of a": (1, 1),
    "read-only token of a": (1, None),
    "org-wide token": (3, 3),
    "finops": (3, 3),
}


def test_list_and_replay_take_exactly_the_rows_of_the_principal(rows):
    team_a, row_ids = rows
    clients = {
        "sre of a": session(MembershipFactory(team=team_a, role=TeamRole.SRE).user),
        "viewer of a": session(MembershipFactory(team=team_a, role=TeamRole.VIEWER).user),
        "token of a": bearer(scopes=["read", "ingest"], team=team_a),
        "read-only token of a": bearer(scopes=["read"], team=team_a),
        "org-wide token": bearer(scopes=["read", "ingest"]),
        "finops": session(UserFactory(org_role=OrgRole.FINOPS)),
    }
    for name, client in clients.items():
        listed, replayed = EXPECTED[name]
        assert client.get("/api/v1/quarantine").json()["count"] == listed, name
        answer = client.post(
            "/api/v1/quarantine/replay", json.dumps({"ids": row_ids}), content_type="application/json"
        )
        if replayed is None:
            assert answer.status_code == 403, name
        else:
            expected = {"rows": replayed, "accepted": 0, "duplicates": 0, "still_rejected": replayed}
            assert answer.json() == expected, name
