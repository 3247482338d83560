"""/api/v1/price-overrides, /api/v1/discounts and /api/v1/reprice-runs: finops and admin change prices
and discounts (audited, a re-pricing run queued on commit); other roles and tokens do not; the run's
before and after are in the API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rest_framework.test import APIClient

from finops.accounts.services import api_token_create
from finops.audit.models import AuditEntry
from finops.ledger.models import Call
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceRun
from finops.pricing.reprice import reprice_run_execute
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def signed_in(*, org_role: str = "", team_role: str | None = None) -> APIClient:
    user = UserFactory(username=f"prices-{org_role or team_role}", org_role=org_role)
    if team_role:
        MembershipFactory(user=user, team=TeamFactory(slug="support"), role=team_role)
    client = APIClient()
    client.force_login(user)
    return client


def bearer(*, scopes: list[str], team=None) -> APIClient:
    _, secret = api_token_create(name=f"prices-{'-'.join(scopes)}", scopes=scopes, team=team)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_finops_adds_changes_and_deletes_a_discount_each_audited_and_repriced(
    db, django_capture_on_commit_callbacks
):
    finops = signed_in(org_role="finops")
    events_ingest(
        raw_events=[
            {
                "event_id": "p-1",
                "timestamp": "2026-11-10T10:00:00Z",
                "team": "support",
                "agent": "triage",
                "provider": "acme",
                "model": "acme-large-2",
                "usage": {"uncached_input": 1_000_000, "output": 100_000},
            }
        ],
        principal=None,
        source="test",
    )
    with django_capture_on_commit_callbacks(execute=False) as queued:
        created = finops.post(
            "/api/v1/price-overrides",
            {
                "provider": "acme",
                "model": "acme-large-2",
                "effective_from": "2026-11-01T00:00:00Z",
                "uncached_input_per_mtok": "2.5",
                "output_per_mtok": "10",
            },
            format="json",
        )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["uncached_input_per_mtok"], body["cache_read_per_mtok"], body["created_by"]) == (
        "2.5",
        None,
        "prices-finops",
    )
    assert len(queued) == 1  # the run goes to the worker once the save commits
    run = RepriceRun.objects.get(pk=body["reprice_run"])
    assert (run.status, run.object_type, run.requested_by_name) == (
        "queued",
        "price_override",
        "prices-finops",
    )
    reprice_run_execute(run_id=run.pk)
    assert Call.objects.get().cost_usd == Decimal("2.5") + Decimal("1")  # 1M × $2.5 + 100k × $10 per MTok

    # a discount from the 5th: 20% off acme
    answer = finops.post(
        "/api/v1/discounts",
        {"provider": "acme", "percent": "20", "effective_from": "2026-11-05T00:00:00Z"},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    discount_id, run_id = answer.json()["id"], answer.json()["reprice_run"]
    reprice_run_execute(run_id=run_id)
    assert Call.objects.get().cost_usd == Decimal("2.8")
    detail = finops.get(f"/api/v1/reprice-runs/{run_id}").json()
    assert (
        detail["status"] == "done"
        and detail["calls_repriced"] == 1
        and detail["months_repriced"] == ["2026-11"]
    )
    assert detail["deltas"] == [
        {
            "day": "2026-11-10",
            "team": "support",
            "provider": "acme",
            "model": "acme-large-2",
            "adjusted": False,
            "before_usd": "3.5",
            "after_usd": "2.8",
            "calls": 1,
        }
    ]

    # moved past the call: the call is back at the list price; then deleted
    changed = finops.patch(
        f"/api/v1/discounts/{discount_id}", {"effective_from": "2026-11-11T00:00:00Z"}, format="json"
    )
    assert changed.status_code == 200
    reprice_run_execute(run_id=changed.json()["reprice_run"])
    assert Call.objects.get().cost_usd == Decimal("3.5")
    deleted = finops.delete(f"/api/v1/discounts/{discount_id}")
    assert deleted.status_code == 200 and RepriceRun.objects.filter(pk=deleted.json()["reprice_run"]).exists()
    assert not NegotiatedDiscount.objects.exists()
    audit = list(AuditEntry.objects.order_by("id").values_list("object_type", "action", "who"))
    assert audit == [
        ("price_override", "create", "prices-finops"),
        ("discount", "create", "prices-finops"),
        ("discount", "update", "prices-finops"),
        ("discount", "delete", "prices-finops"),
    ]
    update = AuditEntry.objects.get(action="update")
    assert (update.before["effective_from"], update.after["effective_from"]) == (
        "2026-11-05T00:00:00Z",
        "2026-11-11T00:00:00Z",
    )
    runs = finops.get("/api/v1/reprice-runs").json()
    assert [run["object_type"] for run in runs["results"]] == ["discount"] * 3 + ["price_override"]


def test_bad_prices_are_refused_naming_the_field(db):
    finops = signed_in(org_role="admin")
    answer = finops.post(
        "/api/v1/discounts",
        {
            "provider": "acme",
            "percent": "150",
            "effective_from": "2026-11-05T00:00:00Z",
            "effective_to": "2026-11-01T00:00:00Z",
        },
        format="json",
    )
    assert answer.status_code == 400
    assert set(answer.json()["extra"]["fields"]) == {"percent"}
    answer = finops.post(
        "/api/v1/discounts",
        {"percent": "5", "effective_from": "2026-11-05T00:00:00Z", "effective_to": "2026-11-01T00:00:00Z"},
        format="json",
    )
    assert answer.json()["extra"]["fields"] == {"effective_to": ["must be after effective_from (or null)"]}
    answer = finops.post(
        "/api/v1/price-overrides",
        {"provider": "acme", "model": "m", "effective_from": "2026-11-01T00:00:00Z", "uncached_input_per_mtok": "-1",
         "output_per_mtok": "1.1234567"},
        format="json",
    )  # fmt: skip
    assert set(answer.json()["extra"]["fields"]) == {"uncached_input_per_mtok", "output_per_mtok"}
    assert not RepriceRun.objects.exists() and not AuditEntry.objects.exists()


def test_only_finops_and_admin_change_prices(db):
    ModelPriceOverride.objects.create(
        provider="acme",
        model="m",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(2),
    )
    payload = {"provider": "acme", "percent": "5", "effective_from": "2026-11-05T00:00:00Z"}
    sre = signed_in(team_role="sre")
    assert sre.get("/api/v1/price-overrides").status_code == 403
    assert sre.post("/api/v1/discounts", payload, format="json").status_code == 403
    org_token = bearer(scopes=["read", "manage"])
    listed = org_token.get("/api/v1/price-overrides").json()
    assert [(row["provider"], row["uncached_input_per_mtok"]) for row in listed] == [("acme", "1")]
    assert org_token.post("/api/v1/discounts", payload, format="json").status_code == 403
    team_token = bearer(scopes=["read", "manage"], team=TeamFactory(slug="support"))
    assert team_token.get("/api/v1/discounts").status_code == 404
    assert not NegotiatedDiscount.objects.exists() and not RepriceRun.objects.exists()
