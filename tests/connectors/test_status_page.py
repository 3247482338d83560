"""The /connectors/ status page: admin and finops only, lists runs, creates connectors, pulls now."""

from __future__ import annotations

import pytest
from django.test import Client

from finops.accounts.models import OrgRole, TeamRole
from ingest.connectors import tasks
from ingest.connectors.models import Connector, ConnectorRun, RunStatus
from ingest.connectors.services import connector_create
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def finops_client(db) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="fin", org_role=OrgRole.FINOPS))
    return client


def csrf_token(client: Client) -> str:
    client.get("/connectors/")
    return client.cookies["csrftoken"].value


def test_anonymous_people_are_sent_to_log_in(db):
    answer = Client().get("/connectors/")
    assert answer.status_code == 302 and answer["Location"].startswith("/login/")


def test_team_roles_are_refused(db):
    client = Client()
    client.force_login(MembershipFactory(role=TeamRole.TECH_LEAD, user=UserFactory(username="lead")).user)
    assert client.get("/connectors/").status_code == 403
    connector = connector_create(kind="openai_usage", name="usage", credentials={"api_key": "k"})
    assert client.post(f"/connectors/{connector.pk}/pull").status_code == 403


def test_the_page_lists_connectors_with_their_last_run_and_no_key(finops_client):
    connector = connector_create(
        kind="anthropic_cost", name="Claude bill", credentials={"api_key": "sk-ant-admin-zz"}
    )
    Connector.objects.filter(pk=connector.pk).update(
        last_status=RunStatus.FAILED, last_error="Anthropic rejected the admin key: 401", last_rows=12
    )

    page = finops_client.get("/connectors/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Claude bill" in html and "Anthropic rejected the admin key: 401" in html
    assert "https://api.anthropic.com" in html and "csrfmiddlewaretoken" in html
    assert "sk-ant-admin-zz" not in html


def test_the_form_creates_a_connector_and_pull_now_queues_it(
    finops_client, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list = []
    monkeypatch.setattr(tasks.pull_connector, "apply_async", lambda args, queue: sent.append(args))
    token = csrf_token(finops_client)

    created = finops_client.post(
        "/connectors/",
        {
            "kind": "openai_usage",
            "name": "OpenAI usage",
            "api_key": "sk-admin-1",
            "pull_from": "2026-09-01",
            "csrfmiddlewaretoken": token,
        },
    )
    assert created.status_code == 302
    connector = Connector.objects.get()
    assert connector.cursor.isoformat() == "2026-09-01T00:00:00+00:00"

    with django_capture_on_commit_callbacks(execute=True):
        pulled = finops_client.post(f"/connectors/{connector.pk}/pull", {"csrfmiddlewaretoken": token})

    assert pulled.status_code == 302
    run = ConnectorRun.objects.get()
    assert sent == [(connector.pk, run.pk)]
    assert "queued" in finops_client.get("/connectors/").content.decode()


def test_pull_now_without_the_csrf_token_is_refused(finops_client):
    connector = connector_create(kind="openai_usage", name="usage", credentials={"api_key": "k"})
    assert finops_client.post(f"/connectors/{connector.pk}/pull").status_code == 403
    assert not ConnectorRun.objects.exists()


def test_an_invalid_form_says_what_is_missing(finops_client):
    token = csrf_token(finops_client)
    answer = finops_client.post("/connectors/", {"kind": "openai_usage", "csrfmiddlewaretoken": token})
    assert answer.status_code == 400
    assert "This field is required" in answer.content.decode()
