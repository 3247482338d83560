"""FOCUS invoices → statement lines: `finops import FILE --format focus` (and auto-detection), exact
amounts, rejected rows by line number, re-import changes nothing, and nothing reaches the call ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from finops.ledger.models import Call
from ingest.connectors.focus import focus_row_line, model_and_token_type, provider_slug
from ingest.connectors.models import StatementKind, StatementLine
from ingest.imports import ImportFileError, file_import
from ingest.models import QuarantinedRow
from tests.factories import MembershipFactory, TeamFactory, UserFactory

HEADER = (
    "BilledCost,EffectiveCost,ListCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,"
    "ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ChargeDescription,ConsumedQuantity,ConsumedUnit,"
    "PricingQuantity,PricingUnit,ProviderName,PublisherName,ServiceName,SkuId,SubAccountId,x_Team"
)
MONTH = "2026-11-01T00:00:00Z,2026-12-01T00:00:00Z"
DAY1 = "2026-11-03T00:00:00Z,2026-11-04T00:00:00Z"
DAY2 = "2026-11-04T00:00:00Z,2026-11-05T00:00:00Z"
# line numbers: the header is line 1
ROWS = [
    # 2: 1,250,000 input tokens at $3/M = 3.75
    f"3.75,3.75,3.75,USD,{MONTH},{DAY1},Usage,claude-sonnet-4-5 input tokens,1250000,Tokens,1.25,1M Tokens,"
    "Anthropic,Anthropic,Claude API,sku-s45-in,wrk_1,support",
    # 3: 0.42 M cache-read tokens at $0.30/M = 0.126
    f"0.126,0.126,0.126,USD,{MONTH},{DAY1},Usage,claude-sonnet-4-5 cache read,0.42,1M Tokens,0.42,1M Tokens,"
    "Anthropic,Anthropic,Claude API,sku-s45-cr,wrk_1,",
    # 4: 98,765 output tokens at $15/M = 1.481475
    f"1.481475,1.481475,1.481475,USD,{MONTH},{DAY1},Usage,claude-sonnet-4-5 output tokens,98765,Tokens,"
    "0.098765,1M Tokens,Anthropic,Anthropic,Claude API,sku-s45-out,wrk_1,",
    # 5: 2,000,000 cached input tokens at $1.25/M = 2.50
    f'2.50,2.50,2.50,usd,{MONTH},{DAY2},Usage,"gpt-4o-2024-08-06, cached input",2000,1000 Tokens,2,1M Tokens,'
    "OpenAI,OpenAI,OpenAI API,sku-4o-ci,proj_9,",
    # 6: a tax line: no model, no token type, no quantity
    f"0.48,0.48,0.48,USD,{MONTH},{DAY1},Tax,Sales tax,,,,,Anthropic,Anthropic,Claude API,,wrk_1,",
    # 7: a date nobody can read
    f"1.00,1.00,1.00,USD,{MONTH},yesterday,2026-11-04T00:00:00Z,Usage,claude-sonnet-4-5 output tokens,10,Tokens,"
    ",,Anthropic,Anthropic,Claude API,sku-s45-out,wrk_1,",
    # 8: a cost that is not a number
    f"twelve,1,1,USD,{MONTH},{DAY2},Usage,claude-sonnet-4-5 output tokens,10,Tokens,,,"
    "Anthropic,Anthropic,Claude API,sku-s45-out,wrk_1,",
    # 9: the rest of line 2's bucket, reported on a second row: 250,000 tokens at $3/M = 0.75
    f"0.75,0.75,0.75,USD,{MONTH},{DAY1},Usage,claude-sonnet-4-5 input tokens,250000,Tokens,0.25,1M Tokens,"
    "Anthropic,Anthropic,Claude API,sku-s45-in,wrk_1,support",
    # 10: a row cut short
    f"0.10,0.10,0.10,USD,{MONTH},{DAY1},Usage",
]
GOOD_TOTAL = (
    Decimal("3.75")
    + Decimal("0.126")
    + Decimal("1.481475")
    + Decimal("2.50")
    + Decimal("0.48")
    + Decimal("0.75")
)


def write_bill(tmp_path, rows=ROWS, name="anthropic-2026-11.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def lines_by_item() -> dict[tuple[str, str], StatementLine]:
    return {(line.model, line.token_type or line.line_item): line for line in StatementLine.objects.all()}


def test_focus_rows_become_exact_statement_lines(db, tmp_path):
    out = StringIO()

    call_command("import", str(write_bill(tmp_path)), "--no-progress", stdout=out)  # format: auto

    lines = lines_by_item()
    assert set(lines) == {
        ("claude-sonnet-4-5", "uncached_input"),
        ("claude-sonnet-4-5", "cache_read"),
        ("claude-sonnet-4-5", "output"),
        ("gpt-4o-2024-08-06", "cache_read"),
        ("", "Sales tax"),
    }
    source = "focus:anthropic-2026-11.csv"
    assert {line.source for line in lines.values()} == {source}
    assert {line.kind for line in lines.values()} == {StatementKind.COST}
    assert all(line.connector_id is None for line in lines.values())

    # rows 2 and 9 are one bucket: their quantities and amounts add up, exactly
    uncached = lines[("claude-sonnet-4-5", "uncached_input")]
    assert (uncached.quantity, uncached.amount) == (1_500_000, Decimal("4.50"))
    assert (uncached.provider, uncached.currency, uncached.project_id) == ("anthropic", "USD", "wrk_1")
    assert (uncached.period_start, uncached.period_end) == (
        at("2026-11-03T00:00:00Z"),
        at("2026-11-04T00:00:00Z"),
    )
    assert uncached.line_item == "claude-sonnet-4-5 input tokens"
    cache_read = lines[("claude-sonnet-4-5", "cache_read")]
    assert (cache_read.quantity, cache_read.amount) == (420_000, Decimal("0.126"))  # 0.42 × "1M Tokens"
    output = lines[("claude-sonnet-4-5", "output")]
    assert (output.quantity, output.amount) == (98_765, Decimal("1.481475"))
    openai = lines[("gpt-4o-2024-08-06", "cache_read")]
    assert (openai.provider, openai.currency, openai.quantity, openai.amount) == (
        "openai",
        "USD",
        2_000_000,  # 2000 × "1000 Tokens"
        Decimal("2.50"),
    )
    tax = lines[("", "Sales tax")]
    assert (tax.token_type, tax.quantity, tax.amount) == ("", None, Decimal("0.48"))
    assert sum(line.amount for line in lines.values()) == GOOD_TOTAL == Decimal("9.087475")

    # statements never reach the call ledger or its quarantine
    assert not Call.objects.exists()
    assert not QuarantinedRow.objects.exists()

    output_text = out.getvalue()
    assert f'9 rows read → statement lines of "{source}"' in output_text
    assert "accepted             5" in output_text
    assert "unchanged            0" in output_text
    assert "rejected             3" in output_text
    assert "line 7: ChargePeriodStart: not an ISO 8601 date/time: 'yesterday'" in output_text
    assert "line 8: BilledCost: not a decimal number: 'twelve'" in output_text
    assert "line 10: non_field_errors: fewer cells than the header has columns" in output_text


def test_importing_the_same_invoice_again_changes_nothing(db, tmp_path):
    path = write_bill(tmp_path)
    first = file_import(path=path, file_format="focus")
    stored = {line.pk: (line.quantity, line.amount, line.pulled_at) for line in StatementLine.objects.all()}

    again = file_import(path=path, file_format="focus")

    assert (first.accepted, first.duplicates, first.rejected) == (5, 0, 3)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 5, 3)
    assert (again.write.created, again.write.updated, again.write.removed) == (0, 0, 0)
    now = {line.pk: (line.quantity, line.amount, line.pulled_at) for line in StatementLine.objects.all()}
    assert now == stored  # same rows, same values, not even pulled_at touched
    assert [sample["position"] for sample in again.rejected_samples] == ["line 7", "line 8", "line 10"]


def test_a_corrected_invoice_updates_its_lines_and_drops_the_ones_it_no_longer_has(db, tmp_path):
    file_import(path=write_bill(tmp_path), file_format="focus")
    corrected = [
        ROWS[0].replace("3.75,3.75,3.75", "3.90,3.90,3.90"),  # line 2 corrected by the provider
        ROWS[1],
        ROWS[3],
        ROWS[4],
        ROWS[7],
    ]  # the output line (row 4) is gone; the bad rows are fixed by leaving them out

    summary = file_import(path=write_bill(tmp_path, corrected), file_format="focus")

    assert (summary.write.created, summary.write.updated, summary.write.unchanged) == (0, 1, 3)
    assert summary.write.removed == 1
    lines = lines_by_item()
    assert ("claude-sonnet-4-5", "output") not in lines
    assert lines[("claude-sonnet-4-5", "uncached_input")].amount == Decimal("3.90") + Decimal("0.75")


def test_a_file_with_a_rejected_row_removes_nothing(db, tmp_path):
    file_import(path=write_bill(tmp_path), file_format="focus")
    summary = file_import(path=write_bill(tmp_path, [ROWS[0], ROWS[6]]), file_format="focus")
    assert summary.rejected == 1 and summary.write.removed == 0
    assert StatementLine.objects.count() == 5


def test_a_csv_without_the_required_columns_is_refused_whole(db, tmp_path):
    path = tmp_path / "bill.csv"
    path.write_text("BilledCost,ChargePeriodStart\n1,2026-10-01\n")
    with pytest.raises(CommandError, match="BillingCurrency is missing.*no provider column"):
        call_command("import", str(path), "--no-progress")
    assert not StatementLine.objects.exists()


def test_only_org_wide_users_import_a_bill(db, tmp_path):
    member = UserFactory()
    MembershipFactory(user=member, team=TeamFactory(slug="support"))
    with pytest.raises(ImportFileError, match="whole organisation"):
        file_import(path=write_bill(tmp_path), file_format="focus", principal=member)
    assert not StatementLine.objects.exists()


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["claude-sonnet-4-5 input tokens"], ("claude-sonnet-4-5", "uncached_input")),
        (["sku-1", "Claude-Opus-4-1 Output Tokens"], ("claude-opus-4-1", "output")),
        (["claude-haiku-4-5 prompt caching write (5m)"], ("claude-haiku-4-5", "cache_write_5m")),
        (["claude-opus-4-1 1h cache write"], ("claude-opus-4-1", "cache_write_1h")),
        (["gpt-4o-mini, cached input"], ("gpt-4o-mini", "cache_read")),
        (["o3 reasoning tokens"], ("o3", "reasoning")),
        (["Claude API", "Platform fee"], ("", "")),  # no model named: kept as a line item only
    ],
)
def test_model_and_token_type_from_the_names_of_a_row(texts, expected):
    assert model_and_token_type(texts) == expected


def test_provider_names_are_normalised():
    assert [provider_slug(name) for name in ("OpenAI", "Anthropic", " anthropic ", "Acme AI, Inc.")] == [
        "openai",
        "anthropic",
        "anthropic",
        "acme-ai-inc",
    ]


def test_row_mapping_prefers_focus_1_3_service_provider_and_keeps_amounts_decimal():
    line = focus_row_line(
        {
            "BilledCost": "0.1000000000000049",  # more places than the store keeps: half-even to 12
            "BillingCurrency": "EUR",
            "ChargePeriodStart": "2026-11-03",
            "ChargePeriodEnd": "2026-11-04",
            "ServiceProviderName": "Anthropic",
            "ProviderName": "Microsoft",
            "ChargeDescription": "claude-sonnet-4-5 batch output tokens",
            "ConsumedQuantity": "1.5",
            "ConsumedUnit": "Tokens",
        }
    )
    assert line["provider"] == "anthropic"
    assert line["amount"] == Decimal("0.100000000000") and isinstance(line["amount"], Decimal)
    assert (line["period_start"], line["period_end"]) == (
        datetime(2026, 11, 3, tzinfo=UTC),
        datetime(2026, 11, 4, tzinfo=UTC),
    )
    assert (line["model"], line["token_type"], line["batch"]) == ("claude-sonnet-4-5", "output", True)
    assert line["quantity"] is None  # 1.5 tokens is not a count: the amount still stands
    with pytest.raises(ValueError) as raised:
        focus_row_line({"BilledCost": "NaN", "BillingCurrency": "US", "ChargePeriodStart": "2026-11-04"})
    assert set(raised.value.args[0]) == {"BilledCost", "BillingCurrency", "ChargePeriodEnd", "ProviderName"}


def test_an_uploaded_bill_keeps_a_focus_source(db, tmp_path):
    """The upload page names every job's source file:<name>; a bill's lines are still focus:<name>."""
    summary = file_import(path=write_bill(tmp_path), source="file:anthropic-2026-11.csv")
    assert summary.format == "focus"
    assert set(StatementLine.objects.values_list("source", flat=True)) == {"focus:anthropic-2026-11.csv"}


def test_a_row_too_large_for_the_statement_store_is_rejected_and_the_good_rows_kept(db, tmp_path):
    rows = [
        ROWS[0],
        f"1e20,1,1,USD,{MONTH},{DAY2},Usage,claude-sonnet-4-5 output tokens,10,Tokens,,,"
        "Anthropic,Anthropic,Claude API,sku-s45-out,wrk_1,",
        f"1.00,1,1,USD,{MONTH},{DAY2},Usage,claude-sonnet-4-5 input tokens,1e30,Tokens,,,"
        "Anthropic,Anthropic,Claude API,sku-s45-in,wrk_1,",
        f"1.00,1,1,USD,{MONTH},0001-01-01T00:00:00+05:00,{DAY2.split(',')[1]},Usage,claude-sonnet-4-5 output tokens,"
        "10,Tokens,,,Anthropic,Anthropic,Claude API,sku-s45-out,wrk_1,",
    ]

    summary = file_import(path=write_bill(tmp_path, rows=rows), file_format="focus")

    assert summary.rejected == 3
    assert [sorted(sample["errors"]) for sample in summary.rejected_samples] == [
        ["BilledCost"],
        ["ConsumedQuantity"],
        ["ChargePeriodStart"],
    ]
    assert StatementLine.objects.count() == 1
