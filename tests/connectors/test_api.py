"""/api/v1/connectors and /api/v1/statements: who may do what, and what comes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TeamRole
from ingest.connectors import tasks
from ingest.connectors.models import Connector, ConnectorRun, RunStatus, StatementLine
from ingest.connectors.services import connector_create
from tests.factories import MembershipFactory, TeamFactory, UserFactory

SECRET_KEY_VALUE = "sk-admin-SECRET-do-not-leak-4242"
DAY_ONE = datetime(2026, 10, 1, tzinfo=UTC)


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def queued_pulls(monkeypatch) -> list:
    """Replaces the worker: remembers what was enqueued."""
    sent: list = []
    monkeypatch.setattr(tasks.pull_connector, "apply_async", lambda args, queue: sent.append((*args, queue)))
    return sent


@pytest.fixture
def connector(db) -> Connector:
    return connector_create(
        kind="openai_costs", name="OpenAI costs", credentials={"api_key": SECRET_KEY_VALUE}
    )


@pytest.fixture
def lines(connector) -> list[StatementLine]:
    made = []
    for day, provider, amount in ((1, "openai", "1.2345"), (2, "openai", "10"), (3, "anthropic", "0.000001")):
        made.append(
            StatementLine.objects.create(
                source=connector.source,
                connector=connector,
                provider=provider,
                kind="cost",
                period_start=datetime(2026, 10, day, tzinfo=UTC),
                period_end=datetime(2026, 10, day + 1, tzinfo=UTC),
                model="gpt-4o",
                token_type="output",
                line_item="gpt-4o, output",
                amount=Decimal(amount),
                currency="USD",
                pulled_at=datetime(2026, 10, 5, tzinfo=UTC),
            )
        )
    return made


def finops_user():
    return UserFactory(username="fin", org_role=OrgRole.FINOPS)


def test_credentials_are_encrypted_at_rest_and_never_answered(connector):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connectors_connector WHERE id = %s", [connector.pk])
        raw_row = " ".join(str(value) for value in cursor.fetchone())
    assert SECRET_KEY_VALUE not in raw_row
    assert "api_key" not in raw_row

    listed = session(finops_user()).get("/api/v1/connectors")
    assert listed.status_code == 200
    assert SECRET_KEY_VALUE not in listed.content.decode()
    assert "credentials" not in listed.json()[0]
    assert listed.json()[0]["base_url"] == "https://api.openai.com"


def test_a_finops_user_creates_a_connector_without_the_key_coming_back(db):
    client = session(finops_user())

    answer = client.post(
        "/api/v1/connectors",
        {
            "kind": "anthropic_usage",
            "name": "Claude usage",
            "credentials": {"api_key": SECRET_KEY_VALUE},
            "base_url": "https://llm-gateway.internal/anthropic/",
            "pull_from": "2026-09-01T00:00:00Z",
        },
        format="json",
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert SECRET_KEY_VALUE not in answer.content.decode() and "credentials" not in body
    assert (body["provider"], body["base_url"], body["cursor"]) == (
        "anthropic",
        "https://llm-gateway.internal/anthropic",
        "2026-09-01T00:00:00Z",
    )
    assert Connector.objects.get().credentials_encrypted


def test_creating_without_a_key_names_the_field(db):
    answer = session(finops_user()).post(
        "/api/v1/connectors", {"kind": "openai_usage", "name": "x", "credentials": {}}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["message"] == "Validation error"
    assert "credentials" in answer.json()["extra"]["fields"]


def test_run_now_queues_a_pull_after_commit_and_answers_202(
    connector, queued_pulls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = session(finops_user()).post(f"/api/v1/connectors/{connector.pk}/run")

    assert answer.status_code == 202
    run = ConnectorRun.objects.get()
    assert answer.json() == {"run_id": run.pk, "connector_id": connector.pk, "status": RunStatus.QUEUED}
    assert queued_pulls == [(connector.pk, run.pk, "ingest")]


def test_run_now_of_an_unknown_connector_is_404(db, queued_pulls):
    assert session(finops_user()).post("/api/v1/connectors/999/run").status_code == 404
    assert queued_pulls == []


def test_statements_are_filtered_paged_and_exact(lines, make_api):
    api = make_api(scopes=["read"])

    everything = api.get("/api/v1/statements").json()
    assert everything["count"] == 3
    assert [line["amount"] for line in everything["results"]] == ["1.2345", "10", "0.000001"]

    openai_early = api.get(
        "/api/v1/statements", provider="openai", start="2026-10-01T00:00:00Z", end="2026-10-02T00:00:00Z"
    ).json()
    assert [line["id"] for line in openai_early["results"]] == [lines[0].pk]
    assert openai_early["results"][0]["token_type"] == "output"

    paged = api.get("/api/v1/statements", page_size=2).json()
    assert (len(paged["results"]), paged["next"] is not None) == (2, True)

    bad = api.get("/api/v1/statements", start="2026-10-03T00:00:00Z", end="2026-10-01T00:00:00Z")
    assert bad.status_code == 400 and "end" in bad.json()["extra"]["fields"]


def _principals(make_api):
    team = TeamFactory(slug="support")
    viewer = MembershipFactory(team=team, role=TeamRole.SRE, user=UserFactory(username="sre")).user
    return {
        "anonymous": APIClient(),
        "team member (sre)": session(viewer),
        "team-bound read token": make_api(scopes=["read"], team=team).client,
        "org ingest-only token": make_api(scopes=["ingest"]).client,
        "org read token": make_api(scopes=["read"]).client,
        "finops user": session(finops_user()),
        "admin user": session(UserFactory(username="boss", org_role=OrgRole.ADMIN)),
    }


# (read statements and connectors, create and run connectors) for each principal
EXPECTED = {
    "anonymous": (401, 401),
    "team member (sre)": (403, 403),
    "team-bound read token": (404, 404),
    "org ingest-only token": (403, 403),
    "org read token": (200, 403),
    "finops user": (200, 201),
    "admin user": (200, 201),
}


def test_permission_matrix(connector, lines, make_api, queued_pulls):
    for name, client in _principals(make_api).items():
        read_status, write_status = EXPECTED[name]
        assert client.get("/api/v1/statements").status_code == read_status, name
        assert client.get("/api/v1/connectors").status_code == read_status, name
        created = client.post(
            "/api/v1/connectors",
            json.dumps({"kind": "openai_usage", "name": name, "credentials": {"api_key": "k"}}),
            content_type="application/json",
        )
        assert created.status_code == write_status, name
        run = client.post(f"/api/v1/connectors/{connector.pk}/run")
        assert run.status_code == (202 if write_status == 201 else write_status), name
        if created.status_code >= 400:
            assert set(created.json()) == {"message", "extra"}, name


def test_the_schema_lists_the_connector_paths(api):
    schema = api.client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"/api/v1/connectors", "/api/v1/connectors/{connector_id}/run", "/api/v1/statements"} <= set(
        schema["paths"]
    )
    # credentials are write-only: in what a client sends, never in what it gets back
    components = schema["components"]["schemas"]
    assert components["ConnectorRequest"]["properties"]["credentials"]["writeOnly"] is True
    assert "credentials" not in components["Connector"]["properties"]


def test_statements_answer_a_browser_with_their_filter_form(lines):
    # the browsable API renders the FilterSet's form: it needs django_filters' templates installed
    answer = session(finops_user()).get("/api/v1/statements", {"provider": "openai"}, HTTP_ACCEPT="text/html")
    assert answer.status_code == 200
    assert b'name="provider"' in answer.content


def test_statement_filters_take_any_iso_offset_as_its_utc_instant(lines):
    client = session(finops_user())
    # 2026-10-02T17:15:00+17:15 is 2026-10-02T00:00Z: the lines of 2 and 3 October start at or after it
    # (PostgreSQL itself refuses offsets past ±15:59)
    answer = client.get("/api/v1/statements", {"start": "2026-10-02T17:15:00+17:15"})
    assert answer.status_code == 200
    assert [line["period_start"] for line in answer.json()["results"]] == [
        "2026-10-02T00:00:00Z",
        "2026-10-03T00:00:00Z",
    ]
    # the first instant of the calendar with an offset east of UTC lies before it
    refused = client.get("/api/v1/statements", {"start": "0001-01-01T00:00:00+05:00"})
    assert refused.status_code == 400
    assert refused.json()["extra"]["fields"]["start"] == ["is outside the calendar once in UTC"]
