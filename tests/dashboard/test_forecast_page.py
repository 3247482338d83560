"""The Forecast page on a fixed clock: month-to-date spend and the month-end projection with its band,
worked out here by hand from the calls sent; the forecast alert fires on the same projection; a past
month shows what was spent against the budget; scoping; budgets set by finops and admin only, audited,
on the page and through the API; an empty state; the table as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from finops.accounts.models import Team
from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.models import Alert, AlertRule
from finops.audit.models import AuditEntry
from finops.pricing.models import ModelPriceOverride
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
RATE = Decimal(2)  # $ per million uncached input tokens: a day's call of k × 500,000 tokens costs $k


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def call(event_id: str, *, at: datetime, team: str, dollars: int) -> dict:
    return {
        "event_id": event_id,
        "timestamp": at.isoformat(),
        "team": team,
        "agent": "bot" if team == "support" else "collector",
        "provider": "acme",
        "model": "m1",
        "usage": {"uncached_input": dollars * 500_000},
    }


def acme_priced() -> None:
    """acme/m1 at RATE per million uncached input tokens, nothing else charged."""
    ModelPriceOverride.objects.create(
        provider="acme",
        model="m1",
        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=RATE,
        cache_read_per_mtok=0,
        cache_write_5m_per_mtok=0,
        cache_write_1h_per_mtok=0,
        output_per_mtok=0,
        reasoning_per_mtok=0,
    )


@pytest.fixture
def clock(monkeypatch):
    """Every reader of timezone.now (the writer's minute-rollup cutoff, the page, the alerts) at NOW."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


@pytest.fixture
def spend(db, clock):
    """support: $k on day k of November at 06:00 (days 1–20), $50 on 10 October; billing: $1000 on
    18 November (another team's number, which support must never see)."""
    acme_priced()
    TeamFactory(slug="support", name="Support")
    TeamFactory(slug="billing", name="Billing")
    events = [
        call(f"s{day}", at=datetime(2026, 11, day, 6, tzinfo=UTC), team="support", dollars=day)
        for day in range(1, 21)
    ]
    events.append(call("oct", at=datetime(2026, 10, 10, 6, tzinfo=UTC), team="support", dollars=50))
    events.append(call("b1", at=datetime(2026, 11, 18, 9, tzinfo=UTC), team="billing", dollars=1000))
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == len(events)


def by_hand() -> dict[str, Decimal]:
    """The forecast at NOW (12:00:30 on 20 November, UTC), step by step."""
    to_date = Decimal(sum(range(1, 21)))  # 1 November to now: days 1–20 (the 20th's call was at 06:00)
    last_week = Decimal(sum(range(14, 21)))  # [13 Nov 12:01, 20 Nov 12:01): the calls of days 14–20
    rate = last_week / 7  # $17 a day
    days_left = Decimal(
        (datetime(2026, 12, 1, tzinfo=UTC) - datetime(2026, 11, 20, 12, 1, tzinfo=UTC)).seconds
    )
    days_left = Decimal(10) + days_left / 86_400  # 10 days 11 h 59 min
    projected = to_date + rate * days_left
    # the band: the 7 whole days before the 20th (13–19) spent 13..19: mean 16, sample variance 28/6
    spread = (Decimal(28) / 6).sqrt()
    margin = 2 * spread * (days_left + days_left * days_left / 7).sqrt()
    return {
        "to_date": to_date,
        "rate": rate,
        "projected": projected,
        "low": projected - margin,
        "high": projected + margin,
    }


@pytest.fixture
def support_member(spend):
    member = UserFactory(username="sam")
    MembershipFactory(user=member, team=Team.objects.get(slug="support"), role="sre")
    return member


@pytest.fixture
def finops_user(db):
    return UserFactory(username="fran", org_role="finops")


def test_the_forecast_at_a_known_date_is_the_one_worked_out_by_hand(client, spend, support_member):
    Team.objects.filter(slug="support").update(monthly_budget_usd=Decimal("300"))
    client.force_login(support_member)
    head, *rows = rows_of(client.get("/forecast/", {"export": "teams"}))
    assert head == [
        "Team", "Monthly budget", "Spent so far", "$ per day (last 7 days)", "Projected month end",
        "Low", "High", "Projected of budget", "Status",
    ]  # fmt: skip
    assert [row[0] for row in rows[:-1]] == ["support"]  # billing is another team's
    row = dict(zip(head, rows[0], strict=True))
    expected = by_hand()
    assert Decimal(row["Monthly budget"]) == 300
    assert Decimal(row["Spent so far"]) == expected["to_date"] == 210
    assert Decimal(row["$ per day (last 7 days)"]) == expected["rate"] == 17
    for column, key in (("Projected month end", "projected"), ("Low", "low"), ("High", "high")):
        assert abs(Decimal(row[column]) - expected[key]) < Decimal("1e-9"), column
    assert expected["projected"].quantize(Decimal("0.01")) == Decimal("388.49")  # 210 + 17 × 10.4993
    assert row["Status"] == "over budget"
    assert float(row["Projected of budget"]) == pytest.approx(float(expected["projected"] / 300))

    page = client.get("/forecast/").content.decode()
    assert "$388.49" in page and "Billing" not in page and "1,000" not in page
    assert "± 2 standard deviations" in page  # the method, in one sentence


def test_the_forecast_alert_fires_on_the_same_projection(spend):
    support = Team.objects.get(slug="support")
    projected = by_hand()["projected"]
    AlertRule.objects.create(team=support, name="under", kind="forecast", value=projected - Decimal("0.01"))
    AlertRule.objects.create(team=support, name="over", kind="forecast", value=projected + Decimal("0.01"))
    alerts_evaluate(now=NOW)
    fired = Alert.objects.get(state="firing")
    assert fired.rule.name == "under"
    assert abs(fired.value - projected) < Decimal("1e-11")


def test_a_past_month_shows_its_spend_against_the_budget(client, spend, support_member):
    Team.objects.filter(slug="support").update(monthly_budget_usd=Decimal("40"))
    client.force_login(support_member)
    head, *rows = rows_of(client.get("/forecast/", {"month": "2026-10", "export": "teams"}))
    assert head == ["Team", "Monthly budget", "Spent", "Of budget", "Status"]
    assert rows[0][:3] == ["support", "40.00", "50.000000000000"]
    assert (float(rows[0][3]), rows[0][4]) == (1.25, "over budget")


def test_month_errors_name_what_was_wrong(client, spend, support_member):
    client.force_login(support_member)
    page = client.get("/forecast/", {"month": "2026-13"}).content.decode()
    assert "month=&#x27;2026-13&#x27; is not a month: give it as YYYY-MM" in page
    page = client.get("/forecast/", {"month": "2027-01"}).content.decode()
    assert "January 2027 has not started" in page


def test_scoping(client, spend, support_member):
    client.force_login(support_member)
    assert client.get("/forecast/", {"team": "billing"}).status_code == 404
    assert client.get("/forecast/", {"agent": "collector"}).status_code == 404
    head, *rows = rows_of(client.get("/forecast/", {"agent": "bot", "export": "teams"}))
    assert [row[0] for row in rows[:-1]] == ["support"]


def test_finops_sees_every_team(client, spend, finops_user):
    client.force_login(finops_user)
    head, *rows = rows_of(client.get("/forecast/", {"export": "teams"}))
    assert {row[0]: Decimal(row[2]) for row in rows[:-1]} == {"billing": 1000, "support": 210}


def test_empty_state(client, db, clock):
    TeamFactory(slug="quiet", name="Quiet")
    client.force_login(UserFactory(username="fran", org_role="finops"))
    page = client.get("/forecast/").content.decode()
    assert 'id="empty-state"' in page and "No spend in November 2026 yet" in page
    assert "data-figure" not in page
    assert 'id="budget"' in page  # budgets can be set before any spend


def test_finops_sets_a_budget_on_the_page_and_it_is_audited(client, spend, finops_user):
    client.force_login(finops_user)
    response = client.post("/forecast/", {"team": "billing", "monthly_budget_usd": "1500.50"})
    assert response.status_code == 302
    assert Team.objects.get(slug="billing").monthly_budget_usd == Decimal("1500.50")
    entry = AuditEntry.objects.get(object_type="team")
    assert (entry.who, entry.action, entry.before, entry.after) == (
        "fran", "update", {"monthly_budget_usd": None}, {"monthly_budget_usd": "1500.50"},
    )  # fmt: skip
    page = client.get("/forecast/").content.decode()
    assert "$1,500.50" in page

    # clearing it, and a value that is not one
    assert client.post("/forecast/", {"team": "billing", "monthly_budget_usd": ""}).status_code == 302
    assert Team.objects.get(slug="billing").monthly_budget_usd is None
    page = client.post("/forecast/", {"team": "billing", "monthly_budget_usd": "-3"}).content.decode()
    assert "Ensure this value is greater than or equal to 0" in page
    assert AuditEntry.objects.filter(object_type="team").count() == 2


def test_others_may_not_set_a_budget(client, spend, support_member):
    client.force_login(support_member)
    assert client.post("/forecast/", {"team": "support", "monthly_budget_usd": "5"}).status_code == 403
    assert client.post("/forecast/", {"team": "billing", "monthly_budget_usd": "5"}).status_code == 404
    assert Team.objects.get(slug="support").monthly_budget_usd is None
    assert not AuditEntry.objects.filter(object_type="team").exists()
    assert 'id="budget"' not in client.get("/forecast/").content.decode()


def test_the_api_sets_budgets_for_finops_only(client, spend, finops_user, support_member):
    client.force_login(support_member)
    assert client.get("/api/v1/teams/support").json()["monthly_budget_usd"] is None
    answer = client.patch(
        "/api/v1/teams/support", {"monthly_budget_usd": "9"}, content_type="application/json"
    )
    assert answer.status_code == 403
    assert "finops or admin" in answer.json()["message"]
    client.force_login(finops_user)
    answer = client.patch(
        "/api/v1/teams/support", {"monthly_budget_usd": "250.00"}, content_type="application/json"
    )
    assert (answer.status_code, answer.json()["monthly_budget_usd"]) == (200, "250.00")
    answer = client.patch(
        "/api/v1/teams/support", {"monthly_budget_usd": "-1"}, content_type="application/json"
    )
    assert answer.status_code == 400
    assert Team.objects.get(slug="support").monthly_budget_usd == Decimal("250.00")
    assert AuditEntry.objects.get(object_type="team").after == {"monthly_budget_usd": "250.00"}


def test_the_band_is_never_below_what_is_spent():
    from finops.kpis.forecast import month_end_forecast

    forecast = month_end_forecast(
        to_date=Decimal(100),
        last_week=Decimal(7),
        daily=[Decimal(0)] * 6 + [Decimal(700)],
        days_left=Decimal(3),
    )
    assert forecast.projected_usd == 103
    assert forecast.low_usd == 100 < forecast.high_usd


def test_query_count_is_pinned_and_no_call_is_read(client, spend, support_member, django_assert_num_queries):
    """This month: the forecast's two rollup reads for every team at once. A past month (in UTC, whole
    days): one daily-rollup read per team shown. Neither reads the calls table."""
    client.force_login(support_member)
    for query, count in (({}, 8), ({"month": "2026-10"}, 7)):
        with django_assert_num_queries(count) as queries:
            assert client.get("/forecast/", query).status_code == 200
        assert not [sql for sql in queries.captured_queries if "ledger_call" in sql["sql"]]


def test_the_month_is_the_organisations_as_for_the_alert(client, db, monkeypatch, settings):
    """In New York, November starts at 04:00 UTC on the 1st (still summer time at midnight): a call
    at 02:00 UTC is October's. The page and the forecast alert count the same month."""
    settings.FINOPS_TIME_ZONE = "America/New_York"
    now = datetime(2026, 11, 3, 12, 0, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: now)
    acme_priced()
    support = TeamFactory(slug="support", name="Support")
    events = [
        call("oct", at=datetime(2026, 11, 1, 2, tzinfo=UTC), team="support", dollars=5),
        call("nov-1", at=datetime(2026, 11, 1, 6, tzinfo=UTC), team="support", dollars=7),
        call("nov-2", at=datetime(2026, 11, 2, 6, tzinfo=UTC), team="support", dollars=11),
    ]
    events_ingest(raw_events=events, principal=None, source="test")
    client.force_login(UserFactory(username="fran", org_role="finops"))
    head, *rows = rows_of(client.get("/forecast/", {"export": "teams"}))
    row = dict(zip(head, rows[0], strict=True))
    assert Decimal(row["Spent so far"]) == 7 + 11
    assert Decimal(row["$ per day (last 7 days)"]) == Decimal(5 + 7 + 11) / 7
    # 1 December 00:00 in New York is 05:00 UTC; from 3 November 12:01 UTC that is 27 d 16 h 59 min
    days_left = 27 + Decimal(16 * 60 + 59) / (24 * 60)
    projected = Decimal(18) + Decimal(23) / 7 * days_left
    assert abs(Decimal(row["Projected month end"]) - projected) < Decimal("1e-9")
    AlertRule.objects.create(team=support, name="month end", kind="forecast", value=Decimal(1))
    alerts_evaluate(now=now)
    assert abs(Alert.objects.get().value - projected) < Decimal("1e-11")
