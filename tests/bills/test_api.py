"""/api/v1/reconciliation and /api/v1/reconciliation/lines/{id} over HTTP: the contract, errors, who may."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TeamRole
from finops.accounts.services import api_token_create
from finops.audit.models import AuditEntry
from finops.bills.models import ReconciliationLine
from tests.bills.conftest import day
from tests.factories import MembershipFactory, UserFactory

SONNET, SONNET_DATED = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
SPEC_FIELDS = {
    "provider", "month", "state", "telemetry_usd", "statement_usd", "invoice_usd", "variance_usd",
    "variance_percent", "explained_usd", "unexplained_usd", "lines",
}  # fmt: skip
SPEC_LINE_FIELDS = {
    "day", "model", "token_type", "telemetry_tokens", "statement_tokens", "telemetry_usd", "statement_usd",
    "variance_usd", "status", "cause", "note", "explained",
}  # fmt: skip


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def token(**kwargs) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(name='t', **kwargs)[1]}")
    return client


@pytest.fixture
def finops(db) -> APIClient:
    return session(UserFactory(username="fin", org_role=OrgRole.FINOPS))


@pytest.fixture
def bill(month):
    month.both(day(3), SONNET, "uncached_input", 1_000_000, "3.00")
    month.telemetry(day(4), SONNET, "output", 100_000, "1.50")
    month.statement(day(4), SONNET_DATED, "output", 100_000, "1.80")
    return month


def test_the_answer_has_spec_fields_as_exact_money(finops, bill):
    response = finops.get("/api/v1/reconciliation", {"provider": "anthropic", "month": "2026-11"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= SPEC_FIELDS and all(set(line) >= SPEC_LINE_FIELDS for line in body["lines"])
    assert (body["provider"], body["month"], body["state"]) == ("anthropic", "2026-11", "open")
    assert body["telemetry_usd"] == "4.500000" and body["statement_usd"] == "4.800000"
    assert body["variance_usd"] == "0.300000" and body["invoice_usd"] is None
    assert body["variance_percent"] == pytest.approx(0.3 / 4.5 * 100)
    assert body["statement_basis"] == "cost"
    rated = next(line for line in body["lines"] if line["token_type"] == "output")
    assert rated["status"] == "under" and rated["cause"] == "rate_differs"
    assert (rated["telemetry_rate_per_mtok"], rated["statement_rate_per_mtok"]) == ("15", "18")
    assert rated["model"] == SONNET and rated["model_names"] == [SONNET, SONNET_DATED]
    assert isinstance(rated["id"], int) and rated["note"] == "" and rated["explained"] is False


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"provider": "anthropic", "month": "2026-13"}, "month", "YYYY-MM"),
        ({"provider": "anthropic", "month": "2026-1"}, "month", "2026-1"),
        ({"provider": "anthropic"}, "month", "required"),
        ({"month": "2026-11"}, "provider", "required"),
        ({"provider": "an thropic", "month": "2026-11"}, "provider", ""),
    ],
)
def test_bad_queries_say_what_was_wrong(finops, query, field, says):
    response = finops.get("/api/v1/reconciliation", query)

    assert response.status_code == 400
    errors = response.json()["extra"]["fields"]
    assert field in errors and says in " ".join(errors[field])


def test_an_unknown_provider_is_an_empty_month(finops, bill):
    body = finops.get("/api/v1/reconciliation", {"provider": "mistral", "month": "2026-11"}).json()
    assert body["lines"] == [] and body["statement_basis"] == "none" and body["statement_usd"] is None


def test_who_may_read(db, bill):
    member = UserFactory(username="sre")
    team = bill.agent.team
    MembershipFactory(user=member, team=team, role=TeamRole.SRE)
    query = {"provider": "anthropic", "month": "2026-11"}
    assert session(member).get("/api/v1/reconciliation", query).status_code == 403
    assert token(scopes=["read"], team=team).get("/api/v1/reconciliation", query).status_code == 404
    assert token(scopes=["ingest"]).get("/api/v1/reconciliation", query).status_code == 403
    assert token(scopes=["read"]).get("/api/v1/reconciliation", query).status_code == 200
    assert APIClient().get("/api/v1/reconciliation", query).status_code == 401


def test_finops_notes_a_line_and_marks_it_explained_audited(finops, bill):
    body = finops.get("/api/v1/reconciliation", {"provider": "anthropic", "month": "2026-11"}).json()
    rated = next(line for line in body["lines"] if line["token_type"] == "output")

    response = finops.patch(
        f"/api/v1/reconciliation/lines/{rated['id']}",
        {"note": "contract rate of $18 from November", "explained": True},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["explained"] is True and response.json()["month"] == "2026-11"
    after = finops.get("/api/v1/reconciliation", {"provider": "anthropic", "month": "2026-11"}).json()
    noted = next(line for line in after["lines"] if line["id"] == rated["id"])
    assert noted["note"] == "contract rate of $18 from November" and noted["explained"] is True
    assert after["explained_usd"] == "0.300000" and after["unexplained_usd"] == "0.000000"
    entry = AuditEntry.objects.get(object_type="reconciliation_line", object_id=str(rated["id"]))
    assert entry.who == "fin" and entry.before["explained"] is False and entry.after["explained"] is True
    line = ReconciliationLine.objects.get(pk=rated["id"])
    assert line.updated_by.username == "fin" and line.updated_at is not None


def test_who_may_annotate(db, bill, finops):
    body = finops.get("/api/v1/reconciliation", {"provider": "anthropic", "month": "2026-11"}).json()
    path = f"/api/v1/reconciliation/lines/{body['lines'][0]['id']}"
    member = UserFactory(username="lead")
    MembershipFactory(user=member, team=bill.agent.team, role=TeamRole.TECH_LEAD)
    change = {"note": "no"}

    assert session(member).patch(path, change, format="json").status_code == 403
    assert token(scopes=["read", "manage"]).patch(path, change, format="json").status_code == 403
    assert (
        token(scopes=["read", "manage"], team=bill.agent.team).patch(path, change, format="json").status_code
        == 404
    )
    assert ReconciliationLine.objects.get(pk=body["lines"][0]["id"]).note == ""
    assert finops.patch("/api/v1/reconciliation/lines/999999", change, format="json").status_code == 404
    assert finops.patch(path, {}, format="json").status_code == 400
    bad = finops.patch(path, {"explained": "perhaps"}, format="json")
    assert bad.status_code == 400 and "explained" in bad.json()["extra"]["fields"]
    admin = session(UserFactory(username="boss", org_role=OrgRole.ADMIN))
    assert admin.patch(path, {"note": "seen"}, format="json").status_code == 200
