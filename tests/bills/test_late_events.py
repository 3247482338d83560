"""A late event for a closed month (SPEC.md, "Bills"): stored as usual, shown as a post-close adjustment in
the next open month, never changing the closed month's figures; idempotent however often it is worked out.
End to end through the real HTTP API: close, POST /api/v1/events, read the chargebacks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from finops.bills.models import Adjustment
from finops.bills.tasks import materialise_late_adjustments
from finops.bills.telemetry import telemetry_month
from finops.ledger.models import Call
from finops.scheduled import BEAT_SCHEDULE
from tests.bills.conftest import call, send, statement_line, usd_of

OCTOBER, NOVEMBER = "2026-10", "2026-11"


def chargeback(client, month: str) -> dict:
    response = client.get("/api/v1/chargeback", {"month": month})
    assert response.status_code == 200, response.content
    return response.json()


def adjustments(body: dict) -> list[tuple]:
    return [
        (row["team"], row["agent"], row["adjusts_month"], row["reason"], Decimal(row["amount_usd"]))
        for row in body["rows"]
        if row["kind"] == "adjustment"
    ]


def october_telemetry() -> Decimal:
    return sum((cell.usd for cell in telemetry_month(provider="openai", month=date(2026, 10, 1))), Decimal(0))


def test_a_late_event_lands_in_the_next_open_month_and_the_closed_month_never_changes(finops_client, api):
    # given October, invoiced at $100, with telemetry 3:1, closed
    send(
        api,
        call("oct-1", "2026-10-05", "support", "triage", 3_000_000),
        call("oct-2", "2026-10-07", "research", "extractor", 1_000_000),
    )
    statement_line(day="2026-10-31", amount="100")
    assert (
        finops_client.post(f"/api/v1/months/{OCTOBER}/close", {"reason": "done"}, format="json").status_code
        == 200
    )
    october_before = chargeback(finops_client, OCTOBER)
    assert {row["team"]: Decimal(row["amount_usd"]) for row in october_before["rows"]} == {
        "support": 75,
        "research": 25,
    }

    # when a call of 20 October arrives after the close
    send(api, call("oct-late-1", "2026-10-20", "support", "triage", 2_000_000))

    # then it is stored ...
    assert Call.objects.filter(event_id="oct-late-1").count() == 1
    # ... October's telemetry and chargeback are as they were at the close ...
    assert october_telemetry() == usd_of(4_000_000)
    assert chargeback(finops_client, OCTOBER) == october_before
    # ... and November shows it as an adjustment of October, at its exact cost
    november = chargeback(finops_client, NOVEMBER)
    assert adjustments(november) == [("support", "triage", OCTOBER, "late_event", usd_of(2_000_000))]
    assert Decimal(november["adjustments_usd"]) == Decimal("5.00")
    assert Decimal(november["total_usd"]) == Decimal("5.00")  # November has no calls of its own

    # worked out again (beat's job, twice, and another read) it is still one row of $5
    assert materialise_late_adjustments() == 0
    assert materialise_late_adjustments() == 0
    assert adjustments(chargeback(finops_client, NOVEMBER)) == adjustments(november)
    assert Adjustment.objects.count() == 1
    # re-sending the same late event changes nothing (the ledger's idempotency)
    assert (
        api.post("/api/v1/events", [call("oct-late-1", "2026-10-20", "support", "triage", 2_000_000)]).json()[
            "duplicates"
        ]
        == 1
    )
    assert adjustments(chargeback(finops_client, NOVEMBER)) == adjustments(november)

    # a second late call of the same agent and day: the row is worked out again, not added to
    send(api, call("oct-late-2", "2026-10-20", "support", "triage", 400_000))
    assert materialise_late_adjustments() > 0
    (row,) = Adjustment.objects.all()
    assert (row.day, row.usd, row.shown_in) == (date(2026, 10, 20), usd_of(2_400_000), date(2026, 11, 1))
    assert chargeback(finops_client, OCTOBER) == october_before


def test_once_the_next_month_closes_its_adjustments_are_frozen_and_later_ones_go_on(finops_client, api):
    send(api, call("oct-1", "2026-10-05", "support", "triage", 1_000_000))
    assert finops_client.post(f"/api/v1/months/{OCTOBER}/close", {}, format="json").status_code == 200
    send(api, call("oct-late-1", "2026-10-06", "support", "triage", 2_000_000))
    # closing November brings October's adjustment up to date and freezes it in November
    assert finops_client.post(f"/api/v1/months/{NOVEMBER}/close", {}, format="json").status_code == 200
    november = chargeback(finops_client, NOVEMBER)
    assert adjustments(november) == [("support", "triage", OCTOBER, "late_event", usd_of(2_000_000))]

    send(api, call("oct-late-2", "2026-10-06", "support", "triage", 1_000_000))

    assert chargeback(finops_client, NOVEMBER) == november
    december = chargeback(finops_client, "2026-12")
    assert adjustments(december) == [("support", "triage", OCTOBER, "late_event", usd_of(1_000_000))]
    assert october_telemetry() == usd_of(1_000_000)


def test_reopening_takes_the_late_events_into_the_month_and_off_the_next(finops_client, api):
    send(api, call("oct-1", "2026-10-05", "support", "triage", 1_000_000))
    assert finops_client.post(f"/api/v1/months/{OCTOBER}/close", {}, format="json").status_code == 200
    send(api, call("oct-late-1", "2026-10-06", "research", "extractor", 1_000_000))
    assert len(adjustments(chargeback(finops_client, NOVEMBER))) == 1

    response = finops_client.post(f"/api/v1/months/{OCTOBER}/reopen", {"reason": "late calls"}, format="json")

    assert response.status_code == 200
    assert response.json()["state"] == "open"
    assert adjustments(chargeback(finops_client, NOVEMBER)) == []
    assert not Adjustment.objects.exists()
    october = chargeback(finops_client, OCTOBER)
    assert {row["team"]: Decimal(row["amount_usd"]) for row in october["rows"]} == {
        "support": usd_of(1_000_000),
        "research": usd_of(1_000_000),
    }
    assert october_telemetry() == usd_of(2_000_000)


def test_beat_runs_the_job_every_five_minutes():
    entry = BEAT_SCHEDULE["materialise-late-adjustments"]
    assert entry["task"] == materialise_late_adjustments.name
    assert len(entry["schedule"].minute) == 12


def test_reopening_the_month_between_moves_the_adjustment_into_it(finops_client, api):
    send(api, call("oct-1", "2026-10-05", "support", "triage", 1_000_000))
    for month in (OCTOBER, NOVEMBER):
        assert finops_client.post(f"/api/v1/months/{month}/close", {}, format="json").status_code == 200
    send(api, call("oct-late-1", "2026-10-06", "support", "triage", 3_000_000))
    assert adjustments(chargeback(finops_client, "2026-12")) == [
        ("support", "triage", OCTOBER, "late_event", usd_of(3_000_000))
    ]

    reopened = finops_client.post(f"/api/v1/months/{NOVEMBER}/reopen", {"reason": "fix"}, format="json")

    assert reopened.status_code == 200
    # November is the first open month after October again: the adjustment shows there, once
    assert adjustments(chargeback(finops_client, NOVEMBER)) == [
        ("support", "triage", OCTOBER, "late_event", usd_of(3_000_000))
    ]
    assert adjustments(chargeback(finops_client, "2026-12")) == []
    assert Adjustment.objects.count() == 1
