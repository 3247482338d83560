"""The Reconciliation page: the reader's numbers, its charts' tables, CSV, notes, and who may see it."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.test import Client

from finops.accounts.models import OrgRole, TeamRole
from finops.audit.models import AuditEntry
from finops.bills.models import ReconciliationLine
from tests.bills.conftest import MonthBuilder, day
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

SONNET, SONNET_DATED = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
PAGE = "/bills/reconciliation/"
NOVEMBER = {"provider": "anthropic", "month": "2026-11"}


@pytest.fixture
def finops(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="fin", org_role=OrgRole.FINOPS))
    return client


@pytest.fixture
def month(db) -> MonthBuilder:
    built = MonthBuilder(agent=AgentFactory(team=TeamFactory(slug="support"), name="ticket-triage"))
    built.both(day(3), SONNET, "uncached_input", 1_000_000, "3.00", workspace_id="wrkspc_agents")
    built.statement(day(3), SONNET_DATED, "uncached_input", 40_000, "0.12", workspace_id="wrkspc_notebooks")
    built.telemetry(day(4), SONNET, "output", 100_000, "1.50")
    built.statement(day(4), SONNET_DATED, "output", 100_000, "1.80")
    built.statement(day(30), "", "", None, "5.00", source="focus:november.csv", line_item="Claude usage")
    return built


def test_the_page_shows_the_readers_totals_and_each_cause(finops, month):
    page = finops.get(PAGE, NOVEMBER)

    assert page.status_code == 200
    html = page.content.decode()
    # telemetry 3.00 + 1.50; statement 3.00 + 0.12 + 1.80; the invoice 5.00
    assert "$4.50" in html and "$4.92" in html and "$5.00" in html
    assert "usage from a key, workspace or project finops saw no telemetry from" in html
    assert "the model priced differently from the provider&#x27;s line" in html
    assert "wrkspc_notebooks" in html
    assert 'id="waterfall-plot"' in html and 'id="days-plot"' in html and 'id="table-lines"' in html


def test_the_waterfall_adds_up_from_telemetry_to_the_invoice(finops, month):
    response = finops.get(PAGE, {**NOVEMBER, "export": "waterfall"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))

    steps = {label: Decimal(amount) for label, _, amount in rows[1:]}
    assert steps["Telemetry"] == Decimal("4.50")
    assert steps["Statement"] == Decimal("4.92") and steps["Invoice"] == Decimal("5.00")
    relative = [Decimal(amount) for _, kind, amount in rows[1:] if kind == "relative"]
    assert steps["Telemetry"] + sum(relative) == steps["Invoice"]
    assert steps["usage from a key, workspace or project finops saw no telemetry from"] == Decimal("0.12")
    assert steps["the model priced differently from the provider's line"] == Decimal("0.30")


def test_the_lines_download_as_csv(finops, month):
    response = finops.get(PAGE, {**NOVEMBER, "export": "lines"})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    output = next(row for row in rows if row["Token type / item"] == "output")
    assert (output["Telemetry $"], output["Statement $"], output["Variance $"]) == (
        "1.500000000000",
        "1.800000000000",
        "0.300000000000",
    )
    assert output["Likely cause"] == "the model priced differently from the provider's line"
    assert int(output["Line id"]) == ReconciliationLine.objects.get(day=day(4), token_type="output").pk


def test_finops_saves_a_note_and_the_totals_move(finops, month):
    finops.get(PAGE, NOVEMBER)
    line = ReconciliationLine.objects.get(day=day(4), token_type="output")

    response = finops.post(
        PAGE + "?provider=anthropic&month=2026-11",
        {"line": line.pk, "note": "contract rate", "explained": "on"},
    )

    assert response.status_code == 302
    line.refresh_from_db()
    assert line.note == "contract rate" and line.explained
    assert AuditEntry.objects.filter(object_type="reconciliation_line", object_id=str(line.pk)).count() == 1
    html = finops.get(PAGE, NOVEMBER).content.decode()
    assert "explained $0.3000, unexplained $0.1200" in html


def test_an_empty_month_and_a_bad_month(finops, db):
    empty = finops.get(PAGE, {"provider": "anthropic", "month": "2020-01"}).content.decode()
    assert 'id="empty-state"' in empty
    bad = finops.get(PAGE, {"provider": "anthropic", "month": "2026-13"})
    assert bad.status_code == 200 and "month must be YYYY-MM" in bad.content.decode()


def test_team_members_are_refused(db, month):
    member = UserFactory(username="lead")
    MembershipFactory(user=member, team=month.agent.team, role=TeamRole.TECH_LEAD)
    client = Client()
    client.force_login(member)
    assert client.get(PAGE, NOVEMBER).status_code == 403
    line = ReconciliationLine.objects.create(
        provider="anthropic", month=day(1), day=day(4), model=SONNET, token_type="output"
    )
    assert client.post(PAGE, {"line": line.pk, "note": "mine"}).status_code == 403
    line.refresh_from_db()
    assert line.note == ""


def test_last_month_is_shown_by_default_and_the_largest_difference_first(finops, month, monkeypatch):
    from datetime import UTC, datetime

    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 12, 3, 9, tzinfo=UTC))
    html = finops.get(PAGE, {"provider": "anthropic"}).content.decode()

    assert "November 2026" in html and 'value="2026-11"' in html
    lines = html[html.find('id="table-lines"') :]
    # the rate difference of the 4th ($0.30) before the unseen workspace's line of the 3rd ($0.12)
    assert 0 < lines.find("2026-11-04") < lines.find("2026-11-03")


def test_the_waterfall_axis_shows_a_small_variance_on_a_large_bill():
    """The demo's $1.40 on a $1,797 bill: on an axis from $0 its step is under a pixel tall. The axis spans
    the levels the bars start and end at, a quarter of that span as margin each side."""
    from dashboard.reconciliation import waterfall_range

    steps = [
        ("Telemetry", "absolute", Decimal("1797.20")),
        ("usage from a key", "relative", Decimal("1.40")),
        ("within the tolerance", "relative", Decimal("-0.40")),
        ("Statement", "total", Decimal("1798.20")),
    ]
    # levels: 1797.20, 1797.20 → 1798.60, 1798.60 → 1798.20, 1798.20; span 1.40, margin 0.35
    assert waterfall_range(steps) == [1796.85, 1798.95]
    assert waterfall_range([("Telemetry", "absolute", Decimal("4.50"))]) is None  # no statement: no step
    # never below $0: telemetry $0.10 against a statement of $5.00
    low, high = waterfall_range(
        [("Telemetry", "absolute", Decimal("0.10")), ("Statement", "total", Decimal("5"))]
    )
    assert (low, high) == (0.0, 6.225)
