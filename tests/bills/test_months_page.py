"""The Months page: the month's chargeback per team and agent (the API's numbers), close and reopen with a
reason and a confirmation, its CSV and FOCUS downloads, an empty state; finops and admin only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.test import Client

from finops.audit.models import AuditEntry
from finops.bills.closing import month_close
from finops.bills.models import BillMonth
from finops.bills.months import month_of
from tests.bills.conftest import call, send, statement_line
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_the_chargeback_the_api_answers(finops_user, finops_client, api):
    send(
        api,
        call("p1", "2026-10-05", "support", "triage", 3_000_000),
        call("p2", "2026-10-05", "research", "extractor", 1_000_000),
    )
    statement_line(day="2026-10-09", amount="100")
    statement_line(day="2026-10-01", amount="20", model="", line_item="Platform fee")
    client = page_client(finops_user)

    text = client.get("/months/", {"month": "2026-10"}).content.decode()

    for shown in ("$75.00", "$25.00", "$20.00", "$120.00", "unattributed", "triage", "extractor"):
        assert shown in text, shown
    assert "/api/v1/chargeback?month=2026-10&amp;format=focus" in text
    assert "/api/v1/chargeback?month=2026-10&amp;format=csv" in text
    exported = client.get("/months/", {"month": "2026-10", "export": "chargeback"})
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    api_rows = finops_client.get("/api/v1/chargeback", {"month": "2026-10"}).json()["rows"]
    amounts = [Decimal(row[7]) for row in rows[1:-1]]
    assert amounts == [Decimal(row["amount_usd"]) for row in api_rows]
    assert Decimal(rows[-1][7]) == 120  # the totals row


def test_closing_needs_the_confirmation_and_reopening_a_reason(finops_user, api):
    send(api, call("p1", "2026-10-05", "support", "triage", 1_000_000))
    client = page_client(finops_user)

    unconfirmed = client.post("/months/", {"action": "close", "month": "2026-10"}, follow=True)
    assert "Tick “I confirm”" in unconfirmed.content.decode()
    assert not BillMonth.objects.filter(state="closed").exists()

    closed = client.post("/months/", {"action": "close", "month": "2026-10", "confirm": "yes"}, follow=True)
    assert closed.redirect_chain[-1][0] == "/months/?month=2026-10"
    assert "Closed 2026-10" in closed.content.decode()
    assert BillMonth.objects.get(month="2026-10-01").state == "closed"
    assert 'id="month-state">closed' in closed.content.decode()

    no_reason = client.post(
        "/months/", {"action": "reopen", "month": "2026-10", "confirm": "yes"}, follow=True
    )
    assert "Say why" in no_reason.content.decode()
    assert BillMonth.objects.get(month="2026-10-01").state == "closed"
    client.post(
        "/months/", {"action": "reopen", "month": "2026-10", "confirm": "yes", "reason": "late invoice"}
    )
    assert BillMonth.objects.get(month="2026-10-01").state == "open"
    assert AuditEntry.objects.filter(object_type="bill_month").count() == 2


def test_the_current_month_offers_no_close_and_an_empty_month_says_so(finops_user):
    client = page_client(finops_user)
    text = client.get("/months/", {"month": "2099-01"}).content.decode()
    assert 'id="empty-state"' in text
    assert 'id="month-change-form"' not in text and "has not ended" in text
    refused = client.post("/months/", {"action": "close", "month": "2099-01", "confirm": "yes"}, follow=True)
    assert "has not ended" in refused.content.decode()


def test_team_members_get_a_403(db):
    member = UserFactory(username="page-sre")
    MembershipFactory(user=member, team=TeamFactory(slug="support"), role="sre")
    client = page_client(member)
    assert client.get("/months/").status_code == 403
    assert (
        client.post("/months/", {"action": "close", "month": "2026-10", "confirm": "yes"}).status_code == 403
    )
    assert "Months" not in client.get("/guardrails/").content.decode()


def test_the_finops_home_says_whether_last_month_is_closed(finops_user):
    last_month = month_of(month_of(datetime.now(UTC)) - timedelta(days=1))
    client = page_client(finops_user)
    assert 'id="last-month-state">Not closed yet' in client.get("/home/").content.decode()

    month_close(principal=finops_user, month=last_month, reason="final")

    text = client.get("/home/").content.decode()
    assert 'id="last-month-state">Closed' in text
    assert f'href="/months/?month={last_month:%Y-%m}"' in text


def test_unpriced_calls_are_a_warning_naming_the_provider_and_their_rows_are_marked(finops_user, api):
    send(
        api,
        call("q1", "2026-10-05", "support", "triage", 3_000_000),
        call("q2", "2026-10-05", "research", "scraper", 1_000, model="openai-mystery-1"),
        call("q3", "2026-10-06", "research", "scraper", 1_000, model="openai-mystery-1"),
    )
    statement_line(day="2026-10-09", amount="100")
    client = page_client(finops_user)

    text = client.get("/months/", {"month": "2026-10"}).content.decode()

    warning = text.split('id="unpriced-warning"')[1].split("</p>")[0]
    assert "2 calls of openai" in warning and "cost is unknown" in warning
    rows = text.split('id="table-chargeback"')[1].split("</table>")[0]
    (marked,) = [row for row in rows.split("<tr")[1:] if 'class="unpriced"' in row]
    assert "scraper" in marked and "$0.00" in marked
    exported = client.get("/months/", {"month": "2026-10", "export": "chargeback"})
    lines = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert lines[0][-1] == "Unpriced calls"
    assert {line[3]: line[-1] for line in lines[1:-1]} == {"triage": "0", "scraper": "2"}


def test_a_month_without_unpriced_calls_has_no_warning(finops_user, api):
    send(api, call("r1", "2026-10-05", "support", "triage", 1_000_000))
    text = page_client(finops_user).get("/months/", {"month": "2026-10"}).content.decode()
    assert 'id="unpriced-warning"' not in text and 'class="unpriced"' not in text
