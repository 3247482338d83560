"""GET /api/v1/chargeback (SPEC.md, "Bills"): the month's invoice, else statement, else telemetry,
allocated to teams and agents by their share of telemetry cost, the unattributed remainder on its own
row, exact to the last digit; CSV and FOCUS 1.2. Every figure expected here is worked out in the test."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.db.models import Sum
from rest_framework.test import APIClient

from finops.accounts.services import api_token_create
from finops.bills.chargeback import allocate
from finops.bills.closing import month_close
from finops.bills.exports import FOCUS_12_COLUMNS
from finops.bills.models import ClosedMonthRollup
from finops.ledger.models import DailyRollup
from tests.bills.conftest import call, send, statement_line, usd_of
from tests.conftest import Api
from tests.factories import MembershipFactory, TeamFactory, UserFactory

OCTOBER = "2026-10"


def chargeback(client, month: str = OCTOBER, **params):
    response = client.get("/api/v1/chargeback", {"month": month, **params})
    assert response.status_code == 200, response.content
    return response


def allocations(body: dict) -> dict[tuple[str, str], Decimal]:
    return {
        (row["team"], row["agent"]): Decimal(row["amount_usd"])
        for row in body["rows"]
        if row["kind"] == "allocation"
    }


def rows_sum(body: dict) -> Decimal:
    return sum((Decimal(row["amount_usd"]) for row in body["rows"]), Decimal(0))


@pytest.fixture
def three_to_one(api):
    """October: support/triage spends 3M input tokens ($7.50), research/extractor 1M ($2.50): 3:1."""
    send(
        api,
        call("a1", "2026-10-05", "support", "triage", 2_000_000),
        call("a2", "2026-10-20", "support", "triage", 1_000_000),
        call("b1", "2026-10-07", "research", "extractor", 1_000_000),
    )
    assert usd_of(3_000_000) == 3 * usd_of(1_000_000)


def test_an_invoice_of_100_splits_75_25_by_telemetry_share(finops_client, three_to_one):
    statement_line(day="2026-10-31", amount="60")
    statement_line(day="2026-10-15", amount="40")

    body = chargeback(finops_client).json()

    assert allocations(body) == {("support", "triage"): Decimal(75), ("research", "extractor"): Decimal(25)}
    assert [row["kind"] for row in body["rows"]] == ["allocation", "allocation"]  # nothing unattributed
    (provider,) = body["providers"]
    assert provider["basis"] == "invoice"
    assert Decimal(provider["total_usd"]) == 100
    assert Decimal(provider["telemetry_usd"]) == usd_of(4_000_000)
    assert Decimal(body["total_usd"]) == rows_sum(body) == 100
    shares = {row["team"]: row["share"] for row in body["rows"]}
    assert shares == {"support": 0.75, "research": 0.25}
    assert body["state"] == "open"


def test_an_invoice_above_telemetry_puts_its_non_token_lines_on_the_unattributed_row(
    finops_client, three_to_one
):
    # $12 of model usage (telemetry said $10) and a $30 support plan naming no model
    statement_line(day="2026-10-10", amount="12")
    statement_line(day="2026-10-01", amount="30", model="", line_item="Support plan")

    body = chargeback(finops_client).json()

    assert allocations(body) == {("support", "triage"): Decimal(9), ("research", "extractor"): Decimal(3)}
    unattributed = [row for row in body["rows"] if row["kind"] == "unattributed"]
    assert [(row["provider"], row["team"], Decimal(row["amount_usd"])) for row in unattributed] == [
        ("openai", None, Decimal(30))
    ]
    assert Decimal(body["unattributed_usd"]) == 30
    assert Decimal(body["total_usd"]) == rows_sum(body) == 42


def test_an_invoice_for_a_provider_without_telemetry_is_all_unattributed(finops_client, db):
    statement_line(day="2026-10-03", amount="17.25", provider="anthropic", model="claude-sonnet-4-5")

    body = chargeback(finops_client).json()

    assert [(row["kind"], row["provider"], row["amount_usd"]) for row in body["rows"]] == [
        ("unattributed", "anthropic", "17.25")
    ]
    assert body["providers"][0]["telemetry_usd"] == "0"


def test_the_invoice_wins_over_the_cost_statement_which_wins_over_telemetry(finops_client, three_to_one):
    statement_line(day="2026-10-10", amount="8", source="openai_costs:1")  # the cost report

    statement_body = chargeback(finops_client).json()
    assert statement_body["providers"][0]["basis"] == "statement"
    assert Decimal(statement_body["total_usd"]) == 8
    assert allocations(statement_body)[("support", "triage")] == 6

    statement_line(day="2026-10-11", amount="20", source="focus:october.csv")
    invoice_body = chargeback(finops_client).json()
    assert invoice_body["providers"][0]["basis"] == "invoice"
    assert Decimal(invoice_body["total_usd"]) == 20


def test_with_only_a_usage_statement_the_telemetry_cost_is_charged_and_said(finops_client, three_to_one):
    statement_line(day="2026-10-10", amount="0", kind="usage", source="openai_usage:1")

    body = chargeback(finops_client).json()

    (provider,) = body["providers"]
    assert provider["basis"] == "telemetry"
    assert "usage statement" in provider["basis_note"]
    assert Decimal(provider["total_usd"]) == usd_of(4_000_000)
    assert allocations(body) == {
        ("support", "triage"): usd_of(3_000_000),
        ("research", "extractor"): usd_of(1_000_000),
    }


def test_thirds_are_exact_and_sum_to_the_invoice(finops_client, api):
    send(
        api,
        call("t1", "2026-10-02", "support", "alpha-bot", 1_000_000),
        call("t2", "2026-10-02", "support", "beta-bot", 1_000_000),
        call("t3", "2026-10-02", "support", "gamma-bot", 1_000_000),
    )
    statement_line(day="2026-10-02", amount="100")

    body = chargeback(finops_client).json()

    third = Decimal("33.333333333333")  # 100/3 rounded half-even at 1e-12
    residue = Decimal(100) - 3 * third  # 1e-12, on the largest (the first of equals)
    assert allocations(body) == {
        ("support", "alpha-bot"): third + residue,
        ("support", "beta-bot"): third,
        ("support", "gamma-bot"): third,
    }
    assert rows_sum(body) == Decimal(body["total_usd"]) == 100


def test_allocate_keeps_every_sum_exact_on_awkward_weights():
    weights = [Decimal("0.000000000007"), Decimal("3.1415926535"), Decimal("2.718281828459"), Decimal(1)]
    for total in (Decimal("99.99"), Decimal("0.000000000013"), Decimal("123456789.123456789012")):
        parts = allocate(total, weights)
        assert sum(parts) == total
        whole = sum(weights)
        for part, weight in zip(parts, weights, strict=True):
            assert abs(part - total * weight / whole) <= Decimal("1e-11")


def test_csv_has_the_rows_exactly_and_text_that_cannot_run(finops_client, api):
    send(
        api,
        call("f1", "2026-10-02", "support", '=HYPERLINK("x")', 3_000_000),
        call("f2", "2026-10-02", "support", "plain", 1_000_000),
    )
    statement_line(day="2026-10-02", amount="100")

    response = chargeback(finops_client, format="csv")

    assert response["Content-Type"].startswith("text/csv")
    assert "finops-chargeback-2026-10.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["agent"]: Decimal(row["amount_usd"]) for row in rows} == {
        '\'=HYPERLINK("x")': Decimal(75),
        "plain": Decimal(25),
    }
    assert {row["month"] for row in rows} == {OCTOBER}


def test_focus_has_the_12_columns_and_team_and_agent(finops_client, three_to_one):
    statement_line(day="2026-10-02", amount="10")
    statement_line(day="2026-10-01", amount="4", model="", line_item="Tax")

    response = chargeback(finops_client, format="focus")

    reader = csv.DictReader(io.StringIO(response.content.decode()))
    assert reader.fieldnames == [*FOCUS_12_COLUMNS, "x_team", "x_agent", "x_unpriced_calls"]
    assert len(FOCUS_12_COLUMNS) == 57 and {"BilledCost", "EffectiveCost", "InvoiceIssuerName"} <= set(
        FOCUS_12_COLUMNS
    )
    rows = list(reader)
    assert sum(Decimal(row["BilledCost"]) for row in rows) == 14
    by_team = {(row["x_team"], row["x_agent"]): row for row in rows}
    assert Decimal(by_team["support", "triage"]["BilledCost"]) == Decimal("7.5")
    assert Decimal(by_team["", ""]["BilledCost"]) == 4  # the unattributed tax
    assert by_team["support", "triage"]["BillingPeriodStart"] == "2026-10-01T00:00:00Z"
    assert by_team["support", "triage"]["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
    assert {row["BillingCurrency"] for row in rows} == {"USD"}
    assert {row["ProviderName"] for row in rows} == {"OpenAI"}


def test_an_empty_month_is_an_empty_chargeback(finops_client):
    body = chargeback(finops_client, month="2026-09").json()
    assert (body["rows"], body["providers"], body["total_usd"]) == ([], [], "0")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"month": "2026-13"}, "month"),
        ({"month": "0000-01"}, "month"),
        ({}, "month"),
        ({"month": OCTOBER, "format": "xlsx"}, "format"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(finops_client, params, field):
    response = finops_client.get("/api/v1/chargeback", params)
    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]


def test_only_the_organisation_reads_it(db, three_to_one):
    team = TeamFactory(slug="walkers")
    member = UserFactory(username="bills-sre")
    MembershipFactory(user=member, team=team, role="sre")
    member_client = APIClient()
    member_client.force_login(member)
    team_token = api_token_create(name="team", scopes=["read"], team=team)[1]
    org_token = api_token_create(name="org", scopes=["read"])[1]

    assert member_client.get("/api/v1/chargeback", {"month": OCTOBER}).status_code == 403
    assert Api(team_token).get("/api/v1/chargeback", month=OCTOBER).status_code == 404
    assert Api(org_token).get("/api/v1/chargeback", month=OCTOBER).status_code == 200
    assert Api().get("/api/v1/chargeback", month=OCTOBER).status_code == 401


# --- calls with no price: counted, in no share, never $0 ---

UNKNOWN_OPENAI = "openai-mystery-1"  # a model the price catalog does not know


def acme_call(event_id: str, day: str, team: str, agent: str) -> dict:
    return {**call(event_id, day, team, agent, 1_000), "provider": "acme", "model": "acme-large-2"}


@pytest.fixture
def with_unpriced(api):
    """October, openai: support/triage 3M priced input tokens ($7.50) and 2 calls of a model with no
    price; research/extractor 1M ($2.50); research/scraper 3 calls, none priced. acme: 2 calls of
    research/scraper, none priced (acme has no price at all)."""
    send(
        api,
        call("u1", "2026-10-05", "support", "triage", 3_000_000),
        call("u2", "2026-10-06", "support", "triage", 500_000, model=UNKNOWN_OPENAI),
        call("u3", "2026-10-07", "support", "triage", 500_000, model=UNKNOWN_OPENAI),
        call("u4", "2026-10-07", "research", "extractor", 1_000_000),
        call("u5", "2026-10-08", "research", "scraper", 700_000, model=UNKNOWN_OPENAI),
        call("u6", "2026-10-09", "research", "scraper", 700_000, model=UNKNOWN_OPENAI),
        call("u7", "2026-10-10", "research", "scraper", 700_000, model=UNKNOWN_OPENAI),
        acme_call("u8", "2026-10-11", "research", "scraper"),
        acme_call("u9", "2026-10-12", "research", "scraper"),
    )
    # the ingest path counted them as unpriced, at no cost (the premise of everything below)
    unknown = DailyRollup.objects.filter(model__in=[UNKNOWN_OPENAI, "acme-large-2"])
    assert unknown.aggregate(calls=Sum("calls"), unpriced=Sum("unpriced_calls"), usd=Sum("cost_usd")) == {
        "calls": 7,
        "unpriced": 7,
        "usd": 0,
    }
    statement_line(day="2026-10-31", amount="70")  # gpt-4o
    statement_line(day="2026-10-31", amount="30.01", model=UNKNOWN_OPENAI)  # priced by openai, not by us
    statement_line(day="2026-10-15", amount="12.34", model="acme-large-2", provider="acme")


def unpriced_expected() -> dict:
    """Every row worked out here: openai's $100.01 of model lines by the priced telemetry 7.50 : 2.50
    (the unpriced calls weigh nothing); acme, with no priced telemetry, all unattributed, and its
    unpriced calls on the row of the agent that made them."""
    telemetry = usd_of(3_000_000) + usd_of(1_000_000)
    triage = (Decimal("100.01") * usd_of(3_000_000) / telemetry).quantize(Decimal("1e-12"))
    extractor = (Decimal("100.01") * usd_of(1_000_000) / telemetry).quantize(Decimal("1e-12"))
    assert triage + extractor == Decimal("100.01")  # 75.0075 and 25.0025: no residue to place
    return {
        ("allocation", "openai", "research", "extractor"): (extractor, 0),
        ("allocation", "openai", "research", "scraper"): (Decimal(0), 3),
        ("allocation", "openai", "support", "triage"): (triage, 2),
        ("allocation", "acme", "research", "scraper"): (Decimal(0), 2),
        ("unattributed", "acme", None, None): (Decimal("12.34"), 0),
    }


def test_unpriced_calls_are_counted_on_their_rows_and_left_out_of_the_shares(finops_client, with_unpriced):
    body = chargeback(finops_client).json()

    assert {
        (row["kind"], row["provider"], row["team"], row["agent"]): (
            Decimal(row["amount_usd"]),
            row["unpriced_calls"],
        )
        for row in body["rows"]
    } == unpriced_expected()
    assert len(body["rows"]) == 5
    scraper = next(row for row in body["rows"] if row["agent"] == "scraper" and row["provider"] == "openai")
    assert (scraper["share"], scraper["telemetry_usd"]) == (0, "0")
    triage = next(row for row in body["rows"] if row["agent"] == "triage")
    assert (triage["share"], Decimal(triage["telemetry_usd"])) == (0.75, usd_of(3_000_000))
    providers = {provider["provider"]: provider for provider in body["providers"]}
    assert {name: provider["unpriced_calls"] for name, provider in providers.items()} == {
        "acme": 2,
        "openai": 5,
    }
    assert (providers["acme"]["telemetry_usd"], providers["acme"]["unattributed_usd"]) == ("0", "12.34")
    assert Decimal(providers["openai"]["telemetry_usd"]) == usd_of(4_000_000)
    assert body["unpriced_calls"] == 7
    assert Decimal(body["total_usd"]) == rows_sum(body) == Decimal("112.35")


def test_a_provider_with_only_unpriced_calls_and_no_statement_shows_them_at_zero(finops_client, api):
    send(api, acme_call("z1", "2026-10-11", "research", "scraper"))

    body = chargeback(finops_client).json()

    (row,) = body["rows"]
    assert (row["kind"], row["provider"], row["agent"], row["amount_usd"], row["unpriced_calls"]) == (
        "allocation",
        "acme",
        "scraper",
        "0",
        1,
    )
    (provider,) = body["providers"]
    assert (provider["basis"], provider["total_usd"], provider["unpriced_calls"]) == ("telemetry", "0", 1)
    assert (body["total_usd"], body["unpriced_calls"]) == ("0", 1)


def test_csv_and_focus_carry_the_unpriced_calls(finops_client, with_unpriced):
    expected = unpriced_expected()

    csv_rows = list(csv.DictReader(io.StringIO(chargeback(finops_client, format="csv").content.decode())))
    focus = csv.DictReader(io.StringIO(chargeback(finops_client, format="focus").content.decode()))

    assert {
        (row["kind"], row["provider"], row["team"] or None, row["agent"] or None): (
            Decimal(row["amount_usd"]),
            int(row["unpriced_calls"]),
        )
        for row in csv_rows
    } == expected
    assert focus.fieldnames == [*FOCUS_12_COLUMNS, "x_team", "x_agent", "x_unpriced_calls"]
    focus_rows = list(focus)
    assert {
        (row["BillingAccountId"], row["x_team"] or None, row["x_agent"] or None): (
            Decimal(row["BilledCost"]),
            int(row["x_unpriced_calls"]),
        )
        for row in focus_rows
    } == {key[1:]: value for key, value in expected.items()}
    assert sum(Decimal(row["BilledCost"]) for row in focus_rows) == Decimal("112.35")


def test_a_closed_month_keeps_its_unpriced_calls_and_figures(finops_client, finops_user, api, with_unpriced):
    before = chargeback(finops_client).json()

    month_close(principal=finops_user, month=date(2026, 10, 1), reason="final")
    assert ClosedMonthRollup.objects.filter(month=date(2026, 10, 1)).aggregate(
        unpriced=Sum("unpriced_calls")
    ) == {"unpriced": 7}
    # a late call of the closed month, unpriced, changes nothing in it
    send(api, call("late", "2026-10-20", "research", "scraper", 1_000, model=UNKNOWN_OPENAI))
    after = chargeback(finops_client).json()

    assert after["state"] == "closed"
    assert {**after, "state": "open"} == before
