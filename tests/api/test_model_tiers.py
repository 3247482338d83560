"""/api/v1/models/usage (the Models page's numbers, from the same selector) and /api/v1/model-tiers
(the org-wide mapping: read by all, changed by admin, finops and any team's ml role, audited)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from finops.accounts.services import api_token_create
from finops.audit.models import AuditEntry
from finops.ledger.tokens import TOKEN_TYPES
from finops.modeltiers.models import ModelTier
from tests.conftest import Api
from tests.dashboard import conftest as dashboard_data
from tests.dashboard.conftest import PROVIDER, UNPRICED_MODEL, expected_cost
from tests.factories import MembershipFactory, UserFactory

MARCH = {"start": "2025-03-01", "end": "2025-04-01"}
ledger = dashboard_data.ledger  # the dashboard tests' small ledger, with round numbers


def person(ledger, role: str) -> APIClient:
    user = UserFactory(username=f"api-{role}")
    MembershipFactory(user=user, team=ledger.teams["support"], role=role)
    client = APIClient()
    client.force_login(user)
    return client


def test_usage_per_model_is_the_events_and_what_the_page_shows(client, ledger):
    ModelTier.objects.create(provider=PROVIDER, model="m1", tier="flagship")
    token = api_token_create(name="support", scopes=["read"], team=ledger.teams["support"])[1]

    answer = Api(token).get("/api/v1/models/usage", **MARCH).json()

    support = [e for e in ledger.events if e["team"] == "support" and e["timestamp"].startswith("2025-03")]
    by_model: dict[str, dict] = {}
    for e in support:
        row = by_model.setdefault(e["model"], {"calls": 0, "tokens": 0, "cost": Decimal(0), "unpriced": 0})
        row["calls"] += 1
        row["tokens"] += sum(e["usage"].get(token_type, 0) for token_type in TOKEN_TYPES)
        if e["model"] == UNPRICED_MODEL:
            row["unpriced"] += 1
        else:
            row["cost"] += expected_cost(e["model"], e["usage"])
    for row in by_model.values():
        if row["unpriced"] == row["calls"]:
            row["cost"] = None  # no call priced: unknown, never $0
    got = {
        row["model"]: {
            "calls": row["calls"],
            "tokens": row["tokens"],
            "cost": None if row["cost_usd"] is None else Decimal(row["cost_usd"]),
            "unpriced": row["unpriced_calls"],
        }
        for row in answer["models"]
    }
    assert got == by_model
    tiers = {row["model"]: row["tier"] for row in answer["models"]}
    assert tiers == {"m1": "flagship", "m2": "unmapped", UNPRICED_MODEL: "unmapped"}
    assert answer["flagship_share_of_calls"] == pytest.approx(by_model["m1"]["calls"] / len(support))
    assert answer["flagship_share_target"] == 0.2
    assert answer["total"]["calls"] == len(support)
    assert [row["tier"] for row in answer["tiers"]] == ["flagship", "mid", "small", "unmapped"]

    # the page's table, for the same days, holds the same numbers
    member = UserFactory(username="api-page")
    MembershipFactory(user=member, team=ledger.teams["support"])
    client.force_login(member)
    page = client.get("/models/", {"start": "2025-03-01", "end": "2025-03-31", "export": "models"})
    _, *rows = list(csv.reader(io.StringIO(b"".join(page.streaming_content).decode())))
    assert {row[1]: (int(row[3]), int(row[5]), Decimal(row[7]) if row[7] else None) for row in rows} == {
        row["model"]: (row["calls"], row["tokens"], row["cost_usd"] and Decimal(row["cost_usd"]))
        for row in answer["models"]
    }


def test_usage_of_another_team_is_a_404_and_bad_windows_are_named(ledger):
    token = api_token_create(name="support", scopes=["read"], team=ledger.teams["support"])[1]
    api = Api(token)
    assert api.get("/api/v1/models/usage", team="billing", **MARCH).status_code == 404
    response = api.get("/api/v1/models/usage", start="2025-03-05", end="2025-03-05")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"] == {"end": ["must be after start"]}
    response = api.get("/api/v1/models/usage", agent="triage", **MARCH)
    assert response.json()["extra"]["fields"] == {"agent": ["give team too: agent names are per team"]}


def test_an_ml_member_changes_the_mapping_through_the_api_and_each_change_is_audited(ledger):
    ml = person(ledger, "ml")
    listed = ml.get("/api/v1/model-tiers").json()
    assert {"provider": "openai", "model": "gpt-4o", "tier": "mid"} in [
        {key: row[key] for key in ("provider", "model", "tier")} for row in listed
    ]

    created = ml.post(
        "/api/v1/model-tiers", {"provider": "acme", "model": "m1", "tier": "small"}, format="json"
    )
    assert created.status_code == 201, created.content
    row_id = created.json()["id"]
    changed = ml.patch(f"/api/v1/model-tiers/{row_id}", {"tier": "flagship"}, format="json")
    assert changed.json()["tier"] == "flagship"
    again = ml.post("/api/v1/model-tiers", {"provider": "acme", "model": "M1", "tier": "mid"}, format="json")
    assert again.status_code == 400
    assert again.json()["extra"]["fields"] == {"model": ["acme/m1 is mapped already: change that row"]}
    assert ml.delete(f"/api/v1/model-tiers/{row_id}").status_code == 204

    entries = AuditEntry.objects.filter(object_type="model_tier", object_id=str(row_id)).order_by("id")
    assert [(entry.action, entry.who, entry.team_id) for entry in entries] == [
        ("create", "api-ml", None),
        ("update", "api-ml", None),
        ("delete", "api-ml", None),
    ]
    assert (entries[1].before["tier"], entries[1].after["tier"]) == ("small", "flagship")


@pytest.mark.parametrize("role", ["viewer", "sre", "pm"])
def test_other_roles_and_tokens_may_not_change_it(ledger, role):
    gpt = ModelTier.objects.get(provider="openai", model="gpt-4o")
    client = person(ledger, role)
    manage = Api(api_token_create(name="org", scopes=["read", "manage"])[1]).client
    for other in (client, manage):
        assert other.get(f"/api/v1/model-tiers/{gpt.pk}").status_code == 200
        assert (
            other.patch(f"/api/v1/model-tiers/{gpt.pk}", {"tier": "small"}, format="json").status_code == 403
        )
        assert other.delete(f"/api/v1/model-tiers/{gpt.pk}").status_code == 403
        response = other.post(
            "/api/v1/model-tiers", {"provider": "a", "model": "b", "tier": "mid"}, format="json"
        )
        assert response.status_code == 403
    assert ModelTier.objects.get(pk=gpt.pk).tier == "mid"
    assert not AuditEntry.objects.filter(object_type="model_tier").exists()
