"""A provider's own CSV export through a saved column mapping: the pure parser (rows in, lines out), the
import (exact totals, idempotent, a corrected file replaces its lines, bad rows reported by line and
reason with the good ones kept) and `finops import FILE --format invoice-csv --mapping NAME`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from finops.accounts.models import OrgRole
from finops.audit.models import AuditEntry
from finops.bills.statements import invoice_lines
from finops.ledger.models import Call
from ingest.connectors.invoice_csv import (
    InvoiceMappingSpec,
    date_formats_reading,
    decimal_read,
    invoice_csv_records,
    invoice_row_line,
    invoice_rows_parse,
    mapping_problems,
    mapping_suggest,
    moment_read,
    preview_read,
    token_type_read,
)
from ingest.connectors.models import InvoiceMapping, StatementKind, StatementLine
from ingest.connectors.services import (
    InvoiceMappingRefused,
    invoice_file_import,
    invoice_mapping_save,
)
from ingest.imports import ImportFileError, file_import
from tests.connectors.invoice_files import (
    ANTHROPIC_COSTS,
    ANTHROPIC_HEADER,
    ANTHROPIC_MAPPING,
    ANTHROPIC_ROWS,
    OPENAI_AMOUNTS,
    OPENAI_HEADER,
    OPENAI_MAPPING,
    OPENAI_ROWS,
    total,
    write_csv,
)
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def parse(header: str, rows: list[str], spec: InvoiceMappingSpec):
    _, records = invoice_csv_records([header, *rows], delimiter=spec.delimiter)
    return list(invoice_rows_parse(records, spec=spec))


def save(name: str, header: str, spec: InvoiceMappingSpec) -> InvoiceMapping:
    return invoice_mapping_save(principal=None, name=name, header=header.split(","), spec=spec)


# --- the pure parser ----------------------------------------------------------------------------------


def test_anthropic_cost_export_rows_become_lines_with_model_and_token_type():
    lines = parse(ANTHROPIC_HEADER, ANTHROPIC_ROWS, ANTHROPIC_MAPPING)

    assert all(isinstance(line, dict) for line in lines)
    assert [line["token_type"] for line in lines[:5]] == [
        "uncached_input",
        "cache_read",
        "cache_write_5m",
        "cache_write_1h",  # the other TTL is its own line, never folded into the 5-minute writes
        "output",
    ]
    first = lines[0]
    assert first["provider"] == "anthropic" and first["currency"] == "USD"
    assert (first["period_start"], first["period_end"]) == (at("2026-11-01"), at("2026-11-02"))
    assert (first["model"], first["workspace_id"], first["api_key_id"]) == (
        "claude-sonnet-4-5-20250929",
        "Support",
        "support-prod",
    )
    assert first["amount"] == Decimal("4.512300") and first["kind"] == StatementKind.COST
    batch = lines[5]
    assert (batch["batch"], batch["service_tier"]) == (True, "batch")
    web_search = lines[7]
    assert (web_search["token_type"], web_search["line_item"]) == ("", "web_search")
    assert sum(line["amount"] for line in lines) == total(ANTHROPIC_COSTS)


def test_openai_line_items_are_parsed_for_model_and_token_type_as_focus_names_are():
    lines = parse(OPENAI_HEADER, OPENAI_ROWS, OPENAI_MAPPING)

    assert [(line["model"], line["token_type"], line["batch"]) for line in lines] == [
        ("gpt-4o-2024-08-06", "uncached_input", False),
        ("gpt-4o-2024-08-06", "cache_read", False),
        ("gpt-4o-2024-08-06", "output", False),
        ("gpt-4o-mini-2024-07-18", "uncached_input", True),
        ("o3-2025-04-16", "output", False),
        ("", "", False),  # a tool's line: no model, no token type, its description kept
    ]
    assert lines[5]["line_item"] == "file search tool calls"
    assert lines[0]["line_item"] == "gpt-4o-2024-08-06, input"
    assert {line["currency"] for line in lines} == {"USD"}  # "usd" in the file
    assert (lines[4]["period_start"], lines[4]["period_end"]) == (at("2026-11-04"), at("2026-11-05"))
    # 2.5012500000000000 is kept as the file says it, never through a float
    assert lines[0]["amount"] == Decimal("2.50125")
    assert sum(line["amount"] for line in lines) == total(OPENAI_AMOUNTS)


def test_unix_seconds_read_the_same_instants_as_the_iso_columns():
    spec = InvoiceMappingSpec(
        columns={**OPENAI_MAPPING.columns, "period_start": "start_time", "period_end": "end_time"},
        provider="openai",
        date_format="unix",
    )
    by_unix = parse(OPENAI_HEADER, OPENAI_ROWS, spec)
    by_iso = parse(OPENAI_HEADER, OPENAI_ROWS, OPENAI_MAPPING)
    assert [(line["period_start"], line["period_end"]) for line in by_unix] == [
        (line["period_start"], line["period_end"]) for line in by_iso
    ]


@pytest.mark.parametrize(
    ("values", "formats"),
    [
        (["03/04/2026", "05/06/2026"], ["dmy", "mdy"]),  # ambiguous: the person chooses
        (["13/04/2026", "05/06/2026"], ["dmy"]),  # a 13th day settles it
        (["04/13/2026"], ["mdy"]),
        (["2026-11-03", "2026-11-04T10:00:00Z"], ["iso"]),
        (["2026-11"], ["ym"]),
        (["1793664000"], ["unix"]),
        (["1793664000000"], ["unix_ms"]),
        (["support", "2026-11-03"], []),
    ],
)
def test_the_date_formats_a_column_reads_in(values, formats):
    assert date_formats_reading(values) == formats


def test_d_m_and_m_d_are_the_mappings_choice_never_a_guess():
    header = "date,amount"
    rows = ["03/04/2026,1.00", "13/04/2026,2.00"]
    day_first = InvoiceMappingSpec(
        columns={"period_start": "date", "amount": "amount"},
        currency="USD",
        provider="openai",
        date_format="dmy",
    )
    month_first = InvoiceMappingSpec(**{**day_first.__dict__, "date_format": "mdy"})

    first, second = parse(header, rows, day_first)
    assert (first["period_start"], second["period_start"]) == (at("2026-04-03"), at("2026-04-13"))
    first, second = parse(header, rows, month_first)
    assert first["period_start"] == at("2026-03-04")
    assert second.errors == {"date": ["'13/04/2026': month must be in 1..12"]}
    # a preview of the ambiguous column suggests no date format: the page asks for one
    preview = preview_read([header, rows[0]], delimiter=",")
    assert preview.date_formats == {"date": ["dmy", "mdy"]}
    suggested = mapping_suggest(header=preview.header, preview=preview)
    assert suggested.date_format == ""
    assert "choose how the dates read" in "; ".join(mapping_problems(spec=suggested, header=preview.header))


@pytest.mark.parametrize(
    ("text", "decimal_comma", "expected"),
    [
        ("1234.5", False, Decimal("1234.5")),
        ("1,234.50", False, Decimal("1234.50")),
        ("$12.003", False, Decimal("12.003")),
        ("(7.25)", False, Decimal("-7.25")),
        ("-0.0000000001", False, Decimal("-1E-10")),
        ("1.234,56", True, Decimal("1234.56")),
        ("0,125", True, Decimal("0.125")),
        ("€ 3,5", True, Decimal("3.5")),
    ],
)
def test_amounts_are_exact_decimals(text, decimal_comma, expected):
    value = decimal_read(text, decimal_comma=decimal_comma)
    assert value == expected and isinstance(value, Decimal)


@pytest.mark.parametrize("text", ["twelve", "1,23,4", "NaN", "Infinity", "", "1.2.3", "0x10"])
def test_what_is_not_an_amount(text):
    with pytest.raises(ValueError):
        decimal_read(text, decimal_comma=False)


@pytest.mark.parametrize(
    ("text", "token_type"),
    [
        ("uncached_input_tokens", "uncached_input"),
        ("cache_creation.ephemeral_1h_input_tokens", "cache_write_1h"),
        ("cache_creation.ephemeral_5m_input_tokens", "cache_write_5m"),
        ("Cache write (1h)", "cache_write_1h"),
        ("cached input", "cache_read"),
        ("Output Tokens", "output"),
        ("web_search", ""),
    ],
)
def test_token_type_names(text, token_type):
    assert token_type_read(text) == token_type


def test_amount_in_cents_month_periods_and_a_semicolon_file_with_decimal_commas():
    header = "Monat;Betrag (Cent);Währung;Modell"
    spec = InvoiceMappingSpec(
        columns={
            "period_start": "Monat",
            "amount": "Betrag (Cent)",
            "currency": "Währung",
            "model": "Modell",
        },
        provider="Mistral AI",
        date_format="ym",
        period="month",
        amount_scale="cents",
        decimal_comma=True,
        delimiter=";",
    )
    (line,) = parse(header, ["2026-12;12.345,5;eur;mistral-large-2411"], spec)
    assert line["amount"] == Decimal("123.455")
    assert (line["period_start"], line["period_end"]) == (at("2026-12-01"), at("2027-01-01"))
    assert (line["provider"], line["currency"], line["model"]) == ("mistral", "EUR", "mistral-large-2411")


def test_a_credit_may_be_negative_and_is_no_token_type():
    spec = InvoiceMappingSpec(
        columns={"period_start": "date", "amount": "amount", "line_item": "item", "category": "type"},
        currency="USD",
        provider="openai",
    )
    credit, usage = parse(
        "date,amount,item,type",
        ["2026-11-30,-25.00,Promotional credit,Credit", "2026-11-30,-1.00,gpt-4o input,Usage"],
        spec,
    )
    assert (credit["amount"], credit["token_type"], credit["line_item"]) == (
        Decimal("-25.00"),
        "",
        "Promotional credit",
    )
    assert usage.errors == {"amount": ["negative (-1.00) on a row that is not a credit, refund or discount"]}


def test_an_inclusive_period_end_covers_its_last_day():
    spec = InvoiceMappingSpec(
        columns={"period_start": "from", "period_end": "to", "amount": "amount"},
        currency="USD",
        provider="anthropic",
        end_inclusive=True,
    )
    (line,) = parse("from,to,amount", ["2026-11-01,2026-11-30,10"], spec)
    assert (line["period_start"], line["period_end"]) == (at("2026-11-01"), at("2026-12-01"))


def test_a_mapping_names_what_it_lacks():
    problems = mapping_problems(
        spec=InvoiceMappingSpec(columns={"model": "Model", "amount": "Cost"}, date_format="iso"),
        header=["Cost", "When"],
    )
    assert problems == [
        "choose the column of the date or period start",
        "choose the currency column, or give the currency of every row",
        "choose the provider column, or give the provider of every row",
        "the file has no column 'Model'",
    ]


def test_moment_read_keeps_offsets_in_utc():
    assert moment_read("2026-11-03T02:00:00+02:00", date_format="iso") == (at("2026-11-03T00:00:00"), False)
    assert moment_read("2026/11/03", date_format="iso") == (at("2026-11-03"), True)


def test_row_errors_name_the_column_and_the_reason():
    spec = InvoiceMappingSpec(
        columns={"period_start": "day", "amount": "cost", "currency": "cur", "quantity": "tokens"},
        provider="openai",
    )
    with pytest.raises(ValueError) as raised:
        invoice_row_line({"day": "", "cost": "abc", "cur": "XYZ", "tokens": "lots"}, spec=spec)
    assert raised.value.args[0] == {
        "day": ["empty: the row has no date"],
        "cost": ["not a number: 'abc'"],
        "cur": ["'XYZ' is not an ISO 4217 currency code"],
        "tokens": ["not a number: 'lots'"],
    }


# --- importing -----------------------------------------------------------------------------------------


def test_anthropic_export_imported_through_a_saved_mapping_totals_the_file(db, tmp_path):
    mapping = save("Anthropic console cost export", ANTHROPIC_HEADER, ANTHROPIC_MAPPING)
    path = write_csv(tmp_path, "claude_api_cost_2026_11.csv", ANTHROPIC_HEADER, ANTHROPIC_ROWS)

    summary = invoice_file_import(path=path, mapping=mapping)

    lines = StatementLine.objects.filter(source="invoice:claude_api_cost_2026_11.csv")
    assert lines.count() == len(ANTHROPIC_ROWS) == summary.write.created
    assert sum(line.amount for line in lines) == total(ANTHROPIC_COSTS) == Decimal("35.08329")
    assert summary.totals == {("anthropic", "USD"): total(ANTHROPIC_COSTS)}
    assert {(line.kind, line.provider, line.connector_id) for line in lines} == {("cost", "anthropic", None)}
    # the bill's reader sees them as November's invoice, not as a cost statement
    november = invoice_lines(provider="anthropic", month=datetime(2026, 11, 1).date())
    assert november.count() == len(ANTHROPIC_ROWS)
    assert not Call.objects.exists()


def test_openai_export_imported_and_imported_again_changes_nothing(db, tmp_path):
    mapping = save("OpenAI cost export", OPENAI_HEADER, OPENAI_MAPPING)
    path = write_csv(tmp_path, "openai-costs-2026-11.csv", OPENAI_HEADER, OPENAI_ROWS)
    first = invoice_file_import(path=path, mapping=mapping)
    stored = {line.pk: (line.amount, line.pulled_at) for line in StatementLine.objects.all()}

    again = invoice_file_import(path=path, mapping=mapping)

    assert (first.write.created, first.rejected) == (6, 0)
    assert (again.write.created, again.write.updated, again.write.unchanged, again.write.removed) == (
        0,
        0,
        6,
        0,
    )
    assert {line.pk: (line.amount, line.pulled_at) for line in StatementLine.objects.all()} == stored
    assert sum(amount for amount, _ in stored.values()) == total(OPENAI_AMOUNTS) == Decimal("13.669375")


def test_a_corrected_export_replaces_its_lines(db, tmp_path):
    mapping = save("OpenAI cost export", OPENAI_HEADER, OPENAI_MAPPING)
    invoice_file_import(path=write_csv(tmp_path, "openai.csv", OPENAI_HEADER, OPENAI_ROWS), mapping=mapping)
    corrected = [OPENAI_ROWS[0].replace("2.5012500000000000", "2.60"), *OPENAI_ROWS[1:4], OPENAI_ROWS[5]]

    summary = invoice_file_import(
        path=write_csv(tmp_path, "openai.csv", OPENAI_HEADER, corrected), mapping=mapping
    )

    assert (summary.write.updated, summary.write.unchanged, summary.write.removed) == (1, 4, 1)
    amounts = sorted(StatementLine.objects.values_list("amount", flat=True))
    expected = ["2.60", *OPENAI_AMOUNTS[1:4], OPENAI_AMOUNTS[5]]
    assert amounts == sorted(Decimal(amount) for amount in expected)


BAD_ROWS_HEADER = "Date,Description,Model,Amount,Currency,Tokens"
TEN_ROWS = [
    "01/11/2026,Input tokens,claude-sonnet-4-5,1.10,USD,366667",  # line 2
    "02/11/2026,Input tokens,claude-sonnet-4-5,2.20,USD,733333",  # 3
    "31/11/2026,Input tokens,claude-sonnet-4-5,3.30,USD,1100000",  # 4: there is no 31 November
    "03/11/2026,Output tokens,claude-sonnet-4-5,4.40,USD,293333",  # 5
    "04/11/2026,Output tokens,claude-sonnet-4-5,n/a,USD,1",  # 6: not a number
    "05/11/2026,Output tokens,claude-sonnet-4-5,5.50,USD,366667",  # 7
    "06/11/2026,Cache read,claude-sonnet-4-5,-0.60,USD,2000000",  # 8: negative, not a credit
    "07/11/2026,Cache read,claude-sonnet-4-5,0.70,USD,2333333",  # 9
    "08/11/2026,Cache read,claude-sonnet-4-5,0.80,USD,2666667",  # 10
    "09/11/2026,Cache read,claude-sonnet-4-5,0.90,USD,3000000",  # 11
]
TEN_ROWS_MAPPING = InvoiceMappingSpec(
    columns={
        "period_start": "Date",
        "line_item": "Description",
        "model": "Model",
        "amount": "Amount",
        "currency": "Currency",
        "quantity": "Tokens",
    },
    provider="anthropic",
    date_format="dmy",
)


def test_three_bad_rows_of_ten_are_reported_by_line_and_the_seven_good_ones_written(db, tmp_path):
    mapping = save("Reseller invoice", BAD_ROWS_HEADER, TEN_ROWS_MAPPING)
    path = write_csv(tmp_path, "reseller-2026-11.csv", BAD_ROWS_HEADER, TEN_ROWS)

    summary = invoice_file_import(path=path, mapping=mapping)

    assert (summary.rows_read, summary.rejected, summary.write.created) == (10, 3, 7)
    assert StatementLine.objects.count() == 7
    good = [row for index, row in enumerate(TEN_ROWS) if index not in (2, 4, 6)]
    assert sum(StatementLine.objects.values_list("amount", flat=True)) == total(
        [row.split(",")[3] for row in good]
    )
    skipped = summary.as_json()["skipped_rows"]
    assert [(row["line"], row["errors"]) for row in skipped] == [
        (4, {"Date": ["'31/11/2026': day is out of range for month"]}),
        (6, {"Amount": ["not a number: 'n/a'"]}),
        (8, {"Amount": ["negative (-0.60) on a row that is not a credit, refund or discount"]}),
    ]
    assert skipped[1]["row"]["Description"] == "Output tokens"  # the row as the file had it
    lines = {(line.period_start.day, line.token_type): line.quantity for line in StatementLine.objects.all()}
    assert lines[(1, "uncached_input")] == 366667 and lines[(9, "cache_read")] == 3_000_000


def test_unknown_currency_and_empty_required_cells_are_skipped_with_their_reason(db, tmp_path):
    mapping = save("Reseller invoice", BAD_ROWS_HEADER, TEN_ROWS_MAPPING)
    rows = [
        "01/11/2026,Input tokens,claude-sonnet-4-5,1.10,ABC,1",
        "02/11/2026,Input tokens,claude-sonnet-4-5,,USD,1",
    ]
    summary = invoice_file_import(path=write_csv(tmp_path, "r.csv", BAD_ROWS_HEADER, rows), mapping=mapping)
    assert [(row["line"], row["errors"]) for row in summary.as_json()["skipped_rows"]] == [
        (2, {"Currency": ["'ABC' is not an ISO 4217 currency code"]}),
        (3, {"Amount": ["empty: the row has no amount"]}),
    ]
    assert not StatementLine.objects.exists()


def test_a_file_whose_header_lacks_a_mapped_column_is_refused_whole(db, tmp_path):
    mapping = save("OpenAI cost export", OPENAI_HEADER, OPENAI_MAPPING)
    path = write_csv(tmp_path, "other.csv", "date,cost", ["2026-11-01,1"])
    with pytest.raises(
        ImportFileError, match="does not fit this file's header: the file has no column .*'amount_value'"
    ):
        invoice_file_import(path=path, mapping=mapping)


def test_saving_a_mapping_is_audited_and_only_for_billing_roles(db):
    finops = UserFactory(username="fin", org_role=OrgRole.FINOPS)
    mapping = invoice_mapping_save(
        principal=finops, name="OpenAI cost export", header=OPENAI_HEADER.split(","), spec=OPENAI_MAPPING
    )
    changed = InvoiceMappingSpec(**{**OPENAI_MAPPING.__dict__, "provider": "OpenAI"})
    invoice_mapping_save(
        principal=finops, name="OpenAI cost export", header=OPENAI_HEADER.split(","), spec=changed
    )
    invoice_mapping_save(
        principal=finops, name="OpenAI cost export", header=OPENAI_HEADER.split(","), spec=changed
    )

    entries = AuditEntry.objects.filter(object_type="invoice_mapping", object_id=str(mapping.pk)).order_by(
        "id"
    )
    assert [(entry.action, entry.who) for entry in entries] == [("create", "fin"), ("update", "fin")]
    assert (
        entries[1].before["spec"]["provider"] == "openai" and entries[1].after["spec"]["provider"] == "OpenAI"
    )
    member = UserFactory(username="sre")
    MembershipFactory(user=member, team=TeamFactory(slug="support"), role="sre")
    with pytest.raises(InvoiceMappingRefused):
        invoice_mapping_save(principal=member, name="x", header=OPENAI_HEADER.split(","), spec=OPENAI_MAPPING)


def test_finops_import_with_a_saved_mapping(db, tmp_path):
    save("OpenAI cost export", OPENAI_HEADER, OPENAI_MAPPING)
    path = write_csv(tmp_path, "openai-costs-2026-11.csv", OPENAI_HEADER, [*OPENAI_ROWS, "x,y,z"])
    out = StringIO()

    call_command(
        "import",
        str(path),
        "--format",
        "invoice-csv",
        "--mapping",
        "OpenAI cost export",
        "--no-progress",
        stdout=out,
    )
    call_command("import", str(path), "--mapping", "OpenAI cost export", "--no-progress", stdout=out)

    text = out.getvalue()
    assert "openai-costs-2026-11.csv (invoice-csv, mapping “OpenAI cost export”): 7 rows read" in text
    assert "accepted             6" in text and "unchanged            6" in text
    assert "line 8: row: fewer cells than the header has columns" in text
    assert f"{format(total(OPENAI_AMOUNTS).normalize(), 'f')}  USD of openai (rows read well)" in text
    assert StatementLine.objects.filter(source="invoice:openai-costs-2026-11.csv").count() == 6


def test_finops_import_says_which_mapping_is_missing(db, tmp_path):
    save("OpenAI cost export", OPENAI_HEADER, OPENAI_MAPPING)
    path = write_csv(tmp_path, "x.csv", OPENAI_HEADER, OPENAI_ROWS)
    with pytest.raises(
        CommandError, match="no saved invoice mapping named 'Azure' \\(saved: OpenAI cost export\\)"
    ):
        call_command("import", str(path), "--mapping", "Azure", "--no-progress")
    with pytest.raises(CommandError, match="needs|pass --mapping NAME"):
        call_command("import", str(path), "--format", "invoice-csv", "--no-progress")
    with pytest.raises(ImportFileError, match="whole organisation"):
        member = UserFactory(username="pm")
        MembershipFactory(user=member, team=TeamFactory(slug="support"))
        file_import(path=path, mapping="OpenAI cost export", principal=member)


def test_quantities_in_millions_become_whole_token_counts():
    spec = InvoiceMappingSpec(
        columns={"period_start": "day", "amount": "cost", "quantity": "mtok", "line_item": "item"},
        currency="USD",
        provider="openai",
        quantity_scale=1_000_000,
    )
    whole, fraction = parse(
        "day,cost,mtok,item",
        ["2026-11-03,3.75,1.25,gpt-4o input", "2026-11-04,0.01,0.0000001,gpt-4o input"],
        spec,
    )
    assert (whole["quantity"], whole["model"], whole["token_type"]) == (1_250_000, "gpt-4o", "uncached_input")
    # a tenth of a token is a rounded figure: the amount is kept, the quantity left unknown
    assert (fraction["quantity"], fraction["amount"]) == (None, Decimal("0.01"))
