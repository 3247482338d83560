"""The Invoices pages through the Django test client, as a finops user walks them: upload → preview of
the first rows → map and save → import → result with the skipped rows; then the next file with the
same header in one step. Team-bound people get a 404."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from finops.accounts.models import OrgRole
from finops.audit.models import AuditEntry
from ingest.connectors.models import InvoiceImport, InvoiceMapping, StatementLine
from tests.connectors.invoice_files import (
    ANTHROPIC_COSTS,
    ANTHROPIC_HEADER,
    ANTHROPIC_ROWS,
    total,
)
from tests.factories import MembershipFactory, TeamFactory, UserFactory


@pytest.fixture
def finops(db, tmp_path, settings, monkeypatch):
    monkeypatch.setenv("FINOPS_DATA_DIR", str(tmp_path))
    client = Client()
    client.force_login(UserFactory(username="fin", org_role=OrgRole.FINOPS))
    return client


def upload(client: Client, name: str, text: str, mapping: InvoiceMapping | None = None):
    data = {"file": SimpleUploadedFile(name, text.encode(), content_type="text/csv")}
    if mapping is not None:
        data["mapping"] = str(mapping.pk)
    return client.post("/ingest/invoices", data)


def mapping_form(**overrides) -> dict:
    form = {
        "column_period_start": "usage_date_utc",
        "column_amount": "cost_usd",
        "column_model": "model",
        "column_token_type": "token_type",
        "column_workspace_id": "workspace",
        "column_api_key_id": "api_key",
        "column_service_tier": "usage_type",
        "column_context_window": "context_window",
        "currency": "USD",
        "provider": "anthropic",
        "date_format": "iso",
        "period": "day",
        "amount_scale": "units",
        "quantity_scale": "1",
        "delimiter": ",",
        "name": "Anthropic console cost export",
    }
    return {**form, **overrides}


# 25 rows: the 11 of the export, 11 more days of output, and three bad rows
EXTRA_DAYS = [
    f"2026-11-{day:02d},claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,{day}.25,{day}.25"
    for day in range(3, 14)
]
BAD = [
    "2026-13-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,1.00,1.00",  # line 24
    "2026-11-20,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,lots,1.00",  # 25
    "2026-11-21,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,-4.00,-4.00",  # 26
]
FILE_ROWS = [*ANTHROPIC_ROWS, *EXTRA_DAYS, *BAD]
FILE = "\n".join([ANTHROPIC_HEADER, *FILE_ROWS]) + "\n"


def test_upload_preview_map_save_import_and_the_result(finops):
    # upload: kept on the server, then the mapping page
    response = upload(finops, "claude_api_cost_2026_11.csv", FILE)
    invoice_import = InvoiceImport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/ingest/invoices/{invoice_import.pk}/map"

    # the preview shows the first 20 rows (lines 2 to 21), not the 21st row of the file
    page = finops.get(response["Location"])
    text = page.content.decode()
    assert page.status_code == 200
    rows = re.findall(
        r'<tr><th scope="row">(\d+)</th>', text.split('id="table-preview"')[1].split("</table>")[0]
    )
    assert rows == [str(line) for line in range(2, 22)]
    preview = text.split('id="table-preview"')[1].split("</table>")[0]
    assert "2026-11-01" in preview and "2026-11-11" in preview and "2026-11-12" not in preview
    assert "<small>iso</small>" in text  # the date column reads as ISO dates
    # the suggested mapping already names the date and amount columns, and the date format
    assert '<option value="usage_date_utc" selected>' in text
    assert '<option value="cost_usd" selected>' in text
    assert 'name="provider" value="anthropic"' in text  # from the file's name: claude_api_cost_…

    # check the mapping on those rows: nothing saved yet
    checked = finops.post(response["Location"], {**mapping_form(), "action": "check"})
    assert checked.status_code == 200
    assert "What the mapping makes of these rows" in checked.content.decode()
    assert "cache_write_1h" in checked.content.decode()
    assert not InvoiceMapping.objects.exists()

    # save the mapping: audited, then the page offers to import with it
    saved = finops.post(response["Location"], {**mapping_form(), "action": "save"})
    mapping = InvoiceMapping.objects.get()
    assert saved.status_code == 302 and saved["Location"].endswith(f"/map?mapping={mapping.pk}")
    assert AuditEntry.objects.filter(object_type="invoice_mapping", action="create").count() == 1
    assert f"Import with “{mapping.name}”" in finops.get(saved["Location"]).content.decode()

    # import
    imported = finops.post(f"/ingest/invoices/{invoice_import.pk}/import", {"mapping": mapping.pk})
    assert imported.status_code == 302 and imported["Location"] == f"/ingest/invoices/{invoice_import.pk}"
    good = [*ANTHROPIC_COSTS, *(row.split(",")[7] for row in EXTRA_DAYS)]
    lines = StatementLine.objects.filter(source="invoice:claude_api_cost_2026_11.csv")
    assert lines.count() == len(good) == 22
    assert sum(line.amount for line in lines) == total(good)

    # the result: the counts, the total, every skipped row with its line and reason
    result = finops.get(imported["Location"])
    body = result.content.decode()
    assert result.status_code == 200
    assert '<td class="num">25</td>' in body and '<td class="num">3</td>' in body
    assert format(total(good).normalize(), ",f") in body
    skipped = finops.get(f"{imported['Location']}?export=skipped").getvalue().decode().splitlines()
    assert skipped == [
        "Line,Column,Reason,Cell",
        "24,usage_date_utc,'2026-13-01': month must be in 1..12,2026-13-01",
        "25,cost_usd,not a number: 'lots',lots",
        # a cell starting with "-" is text a spreadsheet would run as a formula: dashboard.tables quotes it
        '26,cost_usd,"negative (-4.00) on a row that is not a credit, refund or discount",\'-4.00',
    ]

    # importing the same file again (by its upload, in one step with the saved mapping) changes nothing
    again = upload(finops, "claude_api_cost_2026_11.csv", FILE, mapping=mapping)
    second = InvoiceImport.objects.exclude(pk=invoice_import.pk).get()
    assert again["Location"] == f"/ingest/invoices/{second.pk}"
    assert (second.outcome["lines_created"], second.outcome["lines_unchanged"]) == (0, 22)
    assert StatementLine.objects.count() == 22


def test_the_next_file_with_the_same_header_imports_in_one_step(finops):
    upload(finops, "first.csv", FILE)
    first = InvoiceImport.objects.get()
    finops.post(f"/ingest/invoices/{first.pk}/map", {**mapping_form(), "action": "save_import"})
    mapping = InvoiceMapping.objects.get()
    december = [row.replace("2026-11-", "2026-12-") for row in ANTHROPIC_ROWS]

    response = upload(finops, "claude_api_cost_2026_12.csv", "\n".join([ANTHROPIC_HEADER, *december]))

    # without choosing a mapping, the map page fills in the saved one made on this header
    page = finops.get(response["Location"]).content.decode()
    assert "was made on a file with this header" in page
    assert 'value="Anthropic console cost export"' in page
    response = upload(
        finops, "claude_api_cost_2026_12.csv", "\n".join([ANTHROPIC_HEADER, *december]), mapping
    )
    latest = InvoiceImport.objects.order_by("-id").first()
    assert latest.outcome["lines_created"] == len(december) and latest.outcome["skipped"] == 0
    assert sum(
        StatementLine.objects.filter(period_start__month=12).values_list("amount", flat=True)
    ) == total(ANTHROPIC_COSTS)


def test_an_ambiguous_date_must_be_chosen(finops):
    upload(finops, "eu.csv", "Date;Amount\n03/04/2026;1,50\n05/06/2026;2,25\n")
    invoice_import = InvoiceImport.objects.get()
    page = finops.get(f"/ingest/invoices/{invoice_import.pk}/map").content.decode()
    assert "<small>dmy, mdy</small>" in page
    assert '<option value="" selected>— choose —</option>' in page  # no date format picked for the person

    form = {
        "column_period_start": "Date",
        "column_amount": "Amount",
        "currency": "EUR",
        "provider": "mistral",
        "period": "day",
        "amount_scale": "units",
        "quantity_scale": "1",
        "decimal_comma": "on",
        "delimiter": ";",
        "action": "save_import",
        "name": "EU reseller",
    }
    refused = finops.post(f"/ingest/invoices/{invoice_import.pk}/map", {**form, "date_format": ""})
    assert refused.status_code == 400 and "choose how the dates read" in refused.content.decode()
    assert not StatementLine.objects.exists()

    finops.post(f"/ingest/invoices/{invoice_import.pk}/map", {**form, "date_format": "dmy"})
    assert sorted(StatementLine.objects.values_list("period_start__month", "amount")) == [
        (4, Decimal("1.50")),
        (6, Decimal("2.25")),
    ]


def test_deleting_a_mapping_is_audited(finops):
    upload(finops, "first.csv", FILE)
    finops.post(
        f"/ingest/invoices/{InvoiceImport.objects.get().pk}/map", {**mapping_form(), "action": "save"}
    )
    mapping = InvoiceMapping.objects.get()
    response = finops.post(f"/ingest/invoices/mappings/{mapping.pk}/delete")
    assert response.status_code == 302 and not InvoiceMapping.objects.exists()
    assert AuditEntry.objects.filter(object_type="invoice_mapping", action="delete").count() == 1


def test_team_bound_people_get_a_404_and_change_nothing(finops):
    upload(finops, "first.csv", FILE)
    invoice_import = InvoiceImport.objects.get()
    finops.post(f"/ingest/invoices/{invoice_import.pk}/map", {**mapping_form(), "action": "save"})
    mapping = InvoiceMapping.objects.get()
    member = UserFactory(username="lead")
    MembershipFactory(user=member, team=TeamFactory(slug="support"), role="tech_lead")
    client = Client()
    client.force_login(member)

    assert client.get("/ingest/invoices").status_code == 404
    assert client.get(f"/ingest/invoices/{invoice_import.pk}/map").status_code == 404
    assert client.get(f"/ingest/invoices/{invoice_import.pk}").status_code == 404
    assert (
        client.post(f"/ingest/invoices/{invoice_import.pk}/import", {"mapping": mapping.pk}).status_code
        == 404
    )
    assert client.post(f"/ingest/invoices/mappings/{mapping.pk}/delete").status_code == 404
    assert upload(client, "x.csv", FILE, mapping).status_code == 404
    assert InvoiceMapping.objects.count() == 1 and not StatementLine.objects.exists()
    assert InvoiceImport.objects.count() == 1


def test_the_invoices_pages_take_a_fixed_number_of_queries(finops):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert finops.get(path).status_code == 200
        return len(captured)

    upload(finops, "first.csv", FILE)
    first = InvoiceImport.objects.get()
    finops.post(f"/ingest/invoices/{first.pk}/map", {**mapping_form(), "action": "save_import"})
    before = (queries("/ingest/invoices"), queries(f"/ingest/invoices/{first.pk}"))
    mapping = InvoiceMapping.objects.get()
    for number in range(3):
        upload(finops, f"more-{number}.csv", FILE, mapping=mapping)
        finops.post(
            f"/ingest/invoices/{InvoiceImport.objects.order_by('-id').first().pk}/map",
            {**mapping_form(name=f"copy {number}"), "action": "save"},
        )
    assert (queries("/ingest/invoices"), queries(f"/ingest/invoices/{first.pk}")) == before


def test_a_file_that_is_not_utf8_text_is_refused_with_the_reason(finops):
    response = upload(finops, "invoice.xlsx", "placeholder")
    invoice_import = InvoiceImport.objects.get()
    with open(invoice_import.stored_path, "wb") as handle:
        handle.write(b"PK\x03\x04\xff\xfe binary spreadsheet")
    page = finops.get(response["Location"], follow=True)
    assert page.redirect_chain == [("/ingest/invoices", 302)]
    assert "invoice.xlsx: line 1 is not UTF-8 text; save the file as UTF-8" in page.content.decode()
