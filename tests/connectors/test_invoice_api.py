"""POST /api/v1/invoices (an invoice file imported through the API, as `finops import` does) and
GET /api/v1/invoice-mappings: what comes back, idempotence, and who may."""

from __future__ import annotations

from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, TokenScope
from finops.accounts.services import api_token_create
from ingest.connectors.models import StatementLine
from ingest.connectors.services import invoice_mapping_save
from tests.connectors.invoice_files import OPENAI_AMOUNTS, OPENAI_HEADER, OPENAI_MAPPING, OPENAI_ROWS, total
from tests.connectors.test_focus import GOOD_TOTAL, HEADER, ROWS
from tests.factories import MembershipFactory, TeamFactory, UserFactory

BAD = ['1793664000,1793750400,2026-11-03,2026-11-04,12.50,XYZ,"gpt-4o-2024-08-06, output",p,o,O']
FILE = "\n".join([OPENAI_HEADER, *OPENAI_ROWS, *BAD]) + "\n"


def finops_client() -> APIClient:
    client = APIClient()
    client.force_login(UserFactory(username="fin", org_role=OrgRole.FINOPS))
    return client


def post(client: APIClient, text: str, *, name: str = "openai-costs-2026-11.csv", **fields):
    data = {"file": SimpleUploadedFile(name, text.encode(), content_type="text/csv"), **fields}
    return client.post("/api/v1/invoices", data, format="multipart")


def saved_mapping():
    return invoice_mapping_save(
        principal=None, name="OpenAI cost export", header=OPENAI_HEADER.split(","), spec=OPENAI_MAPPING
    )


def test_an_export_imported_through_the_api_answers_its_lines_totals_and_skipped_rows(db):
    saved_mapping()
    client = finops_client()

    first = post(client, FILE, format="invoice-csv", mapping="OpenAI cost export")
    again = post(client, FILE, mapping="OpenAI cost export")  # invoice-csv is the default format

    assert first.status_code == 200, first.content
    body = first.json()
    assert (body["source"], body["mapping"], body["rows_read"]) == (
        "invoice:openai-costs-2026-11.csv",
        "OpenAI cost export",
        7,
    )
    assert (body["lines_created"], body["skipped"]) == (6, 1)
    assert body["skipped_rows"][0]["line"] == 8
    assert body["skipped_rows"][0]["errors"] == {
        "amount_currency": ["'XYZ' is not an ISO 4217 currency code"]
    }
    assert body["totals"] == [{"provider": "openai", "currency": "USD", "amount": "13.669375"}]
    assert Decimal(body["totals"][0]["amount"]) == total(OPENAI_AMOUNTS)
    assert again.status_code == 200
    assert (again.json()["lines_created"], again.json()["lines_unchanged"]) == (0, 6)
    assert sum(StatementLine.objects.values_list("amount", flat=True)) == total(OPENAI_AMOUNTS)


def test_a_focus_file_through_the_api(db):
    text = "\n".join([HEADER, *ROWS]) + "\n"
    response = post(finops_client(), text, name="anthropic-2026-11.csv", format="focus")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["source"], body["lines_created"], body["skipped"]) == ("focus:anthropic-2026-11.csv", 5, 3)
    assert [row["line"] for row in body["skipped_rows"]] == [7, 8, 10]
    assert sum(StatementLine.objects.values_list("amount", flat=True)) == GOOD_TOTAL


def test_a_missing_mapping_or_a_header_it_does_not_fit_is_a_400_saying_so(db):
    saved_mapping()
    client = finops_client()
    missing = post(client, FILE, mapping="Azure")
    assert missing.status_code == 400
    assert missing.json()["extra"]["fields"]["file"] == [
        "no saved invoice mapping named 'Azure' (saved: OpenAI cost export)"
    ]
    unfit = post(client, "day,cost\n2026-11-01,1\n", mapping="OpenAI cost export")
    assert (
        unfit.status_code == 400
        and "does not fit this file's header" in unfit.json()["extra"]["fields"]["file"][0]
    )
    assert not StatementLine.objects.exists()


def test_who_may_import_and_list_mappings(db):
    saved_mapping()
    _, org_ingest = api_token_create(name="bills job", scopes=[TokenScope.INGEST])
    _, org_read = api_token_create(name="reader", scopes=[TokenScope.READ])
    team = TeamFactory(slug="support")
    _, team_token = api_token_create(name="support", scopes=list(TokenScope.values), team=team)
    member = UserFactory(username="pm")
    MembershipFactory(user=member, team=team, role="pm")

    def as_token(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    member_client = APIClient()
    member_client.force_login(member)
    assert post(member_client, FILE, mapping="OpenAI cost export").status_code == 403
    assert post(as_token(team_token), FILE, mapping="OpenAI cost export").status_code == 404
    assert post(as_token(org_read), FILE, mapping="OpenAI cost export").status_code == 403
    assert not StatementLine.objects.exists()
    assert post(as_token(org_ingest), FILE, mapping="OpenAI cost export").status_code == 200
    assert StatementLine.objects.count() == 6

    listed = as_token(org_read).get("/api/v1/invoice-mappings")
    assert listed.status_code == 200
    assert [(item["name"], item["spec"]["columns"]["amount"]) for item in listed.json()] == [
        ("OpenAI cost export", "amount_value")
    ]
    assert as_token(team_token).get("/api/v1/invoice-mappings").status_code == 404
    assert member_client.get("/api/v1/invoice-mappings").status_code == 403
