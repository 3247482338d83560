"""POST /api/v1/months/YYYY-MM/close and /reopen (SPEC.md, "Bills"): finops and admin only, audited; a
month that has not ended cannot be closed; closing twice is a 409; the snapshot is the month's rollups."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Sum
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole
from finops.accounts.services import api_token_create
from finops.audit.models import AuditEntry
from finops.bills.models import BillMonth, ClosedMonthBasis, ClosedMonthRollup
from finops.bills.months import month_next, month_of
from finops.ledger.models import DailyRollup
from tests.bills.conftest import call, send, statement_line, usd_of
from tests.conftest import Api
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def close(client, month: str, reason: str = "books closed"):
    return client.post(f"/api/v1/months/{month}/close", {"reason": reason}, format="json")


def reopen(client, month: str, reason: str | None = "a late invoice"):
    return client.post(
        f"/api/v1/months/{month}/reopen", {} if reason is None else {"reason": reason}, format="json"
    )


def test_closing_snapshots_the_months_rollups_and_is_audited(finops_client, finops_user, api):
    send(
        api,
        call("o1", "2026-10-03", "support", "triage", 2_000_000),
        call("o2", "2026-10-31", "research", "extractor", 1_000_000),
        call("n1", "2026-11-01", "support", "triage", 5_000_000),  # November's: not in October's snapshot
    )
    statement_line(day="2026-10-10", amount="9.10")

    response = close(finops_client, "2026-10")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["month"], body["state"], body["closed_by"], body["reason"]) == (
        "2026-10",
        "closed",
        "bills-finops",
        "books closed",
    )
    assert body["snapshot_rows"] == 2
    assert Decimal(body["telemetry_usd"]) == usd_of(3_000_000)
    snapshot = ClosedMonthRollup.objects.filter(month="2026-10-01")
    october = DailyRollup.objects.filter(day__gte="2026-10-01", day__lt="2026-11-01")
    fields = ["day", "team_id", "agent_id", "provider", "model", "calls", "cost_usd", "uncached_input"]
    assert sorted(snapshot.values_list(*fields)) == sorted(october.values_list(*fields))
    assert ClosedMonthBasis.objects.get(month="2026-10-01").basis == "invoice"
    entry = AuditEntry.objects.get(object_type="bill_month", object_id="2026-10")
    assert (entry.user, entry.action, entry.before["state"], entry.after["state"]) == (
        finops_user,
        "update",
        "open",
        "closed",
    )
    assert entry.after["snapshot_rows"] == 2 and entry.after["reason"] == "books closed"
    listed = {row["month"]: row["state"] for row in finops_client.get("/api/v1/months").json()}
    assert listed["2026-10"] == "closed" and listed["2026-11"] == "open"


def test_closing_twice_is_a_409_and_changes_nothing(finops_client, api):
    send(api, call("o1", "2026-10-03", "support", "triage", 1_000_000))
    assert close(finops_client, "2026-10").status_code == 200
    closed_at = BillMonth.objects.get(month="2026-10-01").closed_at

    again = close(finops_client, "2026-10", reason="again")

    assert again.status_code == 409
    assert "closed already" in again.json()["message"]
    assert BillMonth.objects.get(month="2026-10-01").closed_at == closed_at
    assert ClosedMonthRollup.objects.count() == 1
    assert AuditEntry.objects.filter(object_type="bill_month").count() == 1


def test_a_month_that_has_not_ended_cannot_be_closed(finops_client):
    current = month_of(datetime.now(UTC))
    for month in (current, month_next(current)):
        response = close(finops_client, f"{month:%Y-%m}")
        assert response.status_code == 400
        (message,) = response.json()["extra"]["fields"]["month"]
        assert "has not ended" in message and f"{month_next(month):%Y-%m-%d}" in message
    assert not BillMonth.objects.filter(state="closed").exists()


def test_a_bad_month_is_a_400(finops_client):
    response = close(finops_client, "2026-1")
    assert response.status_code == 400
    assert "YYYY-MM" in response.json()["extra"]["fields"]["month"][0]


def test_reopening_needs_a_reason_drops_the_snapshot_and_is_audited(finops_client, finops_user, api):
    send(api, call("o1", "2026-10-03", "support", "triage", 1_000_000))
    assert close(finops_client, "2026-10").status_code == 200

    without = reopen(finops_client, "2026-10", reason=None)
    blank = reopen(finops_client, "2026-10", reason="  ")
    assert (without.status_code, blank.status_code) == (400, 400)
    assert "reason" in blank.json()["extra"]["fields"]

    response = reopen(finops_client, "2026-10", reason="the invoice came late")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["snapshot_rows"]) == ("open", 1)
    assert not ClosedMonthRollup.objects.exists() and not ClosedMonthBasis.objects.exists()
    entry = AuditEntry.objects.filter(object_type="bill_month").order_by("-id").first()
    assert (entry.before["state"], entry.after["state"], entry.after["reason"]) == (
        "closed",
        "open",
        "the invoice came late",
    )
    assert Decimal(entry.before["telemetry_usd"]) == usd_of(1_000_000)
    assert reopen(finops_client, "2026-10").status_code == 409  # open already


def test_only_admin_and_finops_people_close_and_reopen(db):
    team = TeamFactory(slug="support")
    sre = UserFactory(username="close-sre")
    MembershipFactory(user=sre, team=team, role="sre")
    admin = UserFactory(username="close-admin", org_role=OrgRole.ADMIN)
    clients = {}
    for key, user in (("sre", sre), ("admin", admin)):
        clients[key] = APIClient()
        clients[key].force_login(user)
    org_token = APIClient()
    org_token.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_token_create(name='o', scopes=['read', 'manage'])[1]}"
    )
    team_token = APIClient()
    team_token.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_token_create(name='t', scopes=['read', 'manage'], team=team)[1]}"
    )

    assert close(clients["sre"], "2026-10").status_code == 403
    assert close(org_token, "2026-10").status_code == 403
    assert close(team_token, "2026-10").status_code == 404
    assert close(APIClient(), "2026-10").status_code == 401
    assert not BillMonth.objects.filter(state="closed").exists()
    assert close(clients["admin"], "2026-10").status_code == 200
    assert Api().get("/api/v1/months").status_code == 401


def test_the_snapshot_copies_every_token_and_cost_column(finops_client, api):
    event = call("o1", "2026-10-03", "support", "triage", 1_000)
    event["usage"] |= {"cache_read": 2_000, "cache_write_5m": 3_000, "cache_write_1h": 4_000, "output": 500}
    send(api, event)
    assert close(finops_client, "2026-10").status_code == 200
    columns = [
        *(name for name in ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output")),
        *(
            f"cost_{name}_usd"
            for name in ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
        ),
        "cost_usd",
    ]
    sums = {name: Sum(name) for name in columns}
    assert ClosedMonthRollup.objects.aggregate(**sums) == DailyRollup.objects.aggregate(**sums)
