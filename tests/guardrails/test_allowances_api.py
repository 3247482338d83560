"""Allowances through the API: live usage as SPEC.md shows it; created and changed by the team's sre and
tech_lead, admin and finops, and manage tokens; read only for other roles; 404 for other teams; every
change in the audit log (who, when, before, after). The kill switch through PATCH /agents/{id}."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from finops.audit.models import AuditEntry
from finops.guardrails.models import Allowance
from finops.guardrails.windows import window_bounds
from finops.ledger.models import Agent
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

BODY = {"team": "support", "agent": "refund-bot", "window": "day", "limit_usd": "25.00", "action": "deny"}


@pytest.fixture
def support(db):
    team = TeamFactory(slug="support")
    AgentFactory(team=team, name="refund-bot")
    TeamFactory(slug="search")
    return team


def person(*, role: str | None = None, org_role: str = "", team_slug: str = "support") -> APIClient:
    user = UserFactory(org_role=org_role)
    if role:
        MembershipFactory(user=user, team=TeamFactory(slug=team_slug), role=role)
    client = APIClient()
    client.force_login(user)
    return client


def bearer(make_api, *, scopes, team=None) -> APIClient:
    return make_api(scopes=scopes, team=team).client


def test_an_allowance_shows_its_live_usage_and_window(api, make_api, support):
    manager = bearer(make_api, scopes=["manage"], team=support)
    created = manager.post("/api/v1/allowances", BODY, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    api.post(
        "/api/v1/events",
        [
            {
                "event_id": "e-1",
                "timestamp": timezone.now().isoformat(),
                "team": "support",
                "agent": "refund-bot",
                "provider": "openai",
                "model": "gpt-4o",
                "usage": {"uncached_input": 1_000_000, "output": 1000},  # $2.50 + $0.01
            }
        ],
    )
    api.post("/api/v1/guard/check", {"team": "support", "agent": "refund-bot", "estimated_cost_usd": "0.12"})
    start, end = window_bounds(window="day", at=timezone.now())
    answer = manager.get(f"/api/v1/allowances/{body['id']}").json()
    assert answer == {
        "id": body["id"],
        "team": "support",
        "agent": "refund-bot",
        "window": "day",
        "limit_tokens": None,
        "limit_usd": "25.00",
        "warn_at": 0.8,
        "action": "deny",
        "used_tokens": 1_001_000,
        "used_usd": "2.510000",
        "unpriced_calls": 0,
        "reserved_tokens": 0,
        "reserved_usd": "0.120000",
        "window_start": start.isoformat().replace("+00:00", "Z"),
        "resets_at": end.isoformat().replace("+00:00", "Z"),
    }
    assert manager.get("/api/v1/allowances").json() == [answer]


@pytest.mark.parametrize(
    ("who", "may_change"),
    [
        ("sre", True),
        ("tech_lead", True),
        ("admin", True),
        ("finops", True),
        ("viewer", False),
        ("pm", False),
        ("ml", False),
    ],
)
def test_who_may_change_allowances(support, who, may_change):
    client = person(org_role=who) if who in {"admin", "finops"} else person(role=who)
    created = client.post("/api/v1/allowances", BODY, format="json")
    assert created.status_code == (201 if may_change else 403), created.content
    allowance = Allowance.objects.create(team=support, window="hour", limit_tokens=10)
    assert client.get(f"/api/v1/allowances/{allowance.pk}").status_code == 200
    changed = client.patch(f"/api/v1/allowances/{allowance.pk}", {"limit_tokens": 20}, format="json")
    assert changed.status_code == (200 if may_change else 403)
    deleted = client.delete(f"/api/v1/allowances/{allowance.pk}")
    assert deleted.status_code == (204 if may_change else 403)


def test_other_teams_allowances_are_not_found(make_api, support):
    search_sre = person(role="sre", team_slug="search")
    allowance = Allowance.objects.create(team=support, window="hour", limit_tokens=10)
    assert search_sre.get(f"/api/v1/allowances/{allowance.pk}").status_code == 404
    assert (
        search_sre.patch(f"/api/v1/allowances/{allowance.pk}", {"limit_tokens": 1}, format="json").status_code
        == 404
    )
    assert search_sre.delete(f"/api/v1/allowances/{allowance.pk}").status_code == 404
    assert search_sre.get("/api/v1/allowances").json() == []
    # a team it cannot see is a team it cannot name: the same answer as a team that does not exist
    foreign = search_sre.post("/api/v1/allowances", BODY, format="json")
    assert foreign.status_code == 404
    assert foreign.json() == {"message": "no team 'support' that you may see", "extra": {}}
    search_token = bearer(make_api, scopes=["manage"], team=TeamFactory(slug="search"))
    assert search_token.get(f"/api/v1/allowances/{allowance.pk}").status_code == 404
    ingest_only = bearer(make_api, scopes=["ingest"], team=support)
    assert ingest_only.post("/api/v1/allowances", BODY, format="json").status_code == 403


def test_bad_allowances_name_the_field(make_api, support):
    manager = bearer(make_api, scopes=["manage"])
    no_limit = manager.post("/api/v1/allowances", {**BODY, "limit_usd": None}, format="json")
    assert no_limit.status_code == 400
    assert "limit_usd" in no_limit.json()["extra"]["fields"]
    bad_window = manager.post("/api/v1/allowances", {**BODY, "window": "fortnight"}, format="json")
    assert "window" in bad_window.json()["extra"]["fields"]
    bad_warn = manager.post("/api/v1/allowances", {**BODY, "warn_at": 1.5}, format="json")
    assert "warn_at" in bad_warn.json()["extra"]["fields"]
    unknown_team = manager.post("/api/v1/allowances", {**BODY, "team": "nope"}, format="json")
    assert unknown_team.status_code == 404
    assert unknown_team.json()["message"] == "no team 'nope' that you may see"
    # "\\ud800" as JSON text: a lone surrogate, which PostgreSQL's text cannot hold
    raw = json.dumps({**BODY, "agent": "bot\ud800"})
    lone_surrogate = manager.post("/api/v1/allowances", raw, content_type="application/json")
    assert lone_surrogate.status_code == 400
    assert "agent" in lone_surrogate.json()["extra"]["fields"]


def test_every_change_is_audited_with_who_before_and_after(support):
    sre = person(role="sre")
    created = sre.post("/api/v1/allowances", BODY, format="json").json()
    sre.patch(f"/api/v1/allowances/{created['id']}", {"limit_usd": "30", "window": "week"}, format="json")
    sre.delete(f"/api/v1/allowances/{created['id']}")
    entries = sre.get("/api/v1/audit", object_type="allowance").json()["results"]
    assert [(entry["action"], entry["object_id"]) for entry in entries] == [
        ("delete", str(created["id"])),
        ("update", str(created["id"])),
        ("create", str(created["id"])),
    ]
    settings = {
        "team": "support",
        "agent": "refund-bot",
        "warn_at": 0.8,
        "action": "deny",
        "limit_tokens": None,
    }
    assert entries[2]["before"] is None
    assert entries[2]["after"] == {**settings, "window": "day", "limit_usd": "25.000000"}
    assert entries[1]["before"] == entries[2]["after"]
    assert entries[1]["after"] == {**settings, "window": "week", "limit_usd": "30.000000"}
    assert entries[0]["after"] is None
    assert {entry["who"] for entry in entries} == {AuditEntry.objects.first().user.username}
    assert person(role="viewer", team_slug="search").get("/api/v1/audit").json()["results"] == []


def test_the_kill_switch_is_set_by_sre_tech_lead_and_manage_tokens(make_api, support):
    agent = Agent.objects.get(name="refund-bot")
    path = f"/api/v1/agents/{agent.pk}"
    assert person(role="sre").patch(path, {"max_steps": 40}, format="json").status_code == 200
    assert person(role="tech_lead").patch(path, {"max_cost_usd": "2.00"}, format="json").status_code == 200
    assert person(role="pm").patch(path, {"max_steps": 1}, format="json").status_code == 403
    token = bearer(make_api, scopes=["manage"], team=support)
    assert token.patch(path, {"max_cost_usd": "3.00"}, format="json").status_code == 200
    assert token.patch(path, {"cost_slo_usd": "0.30"}, format="json").status_code == 403  # not a guardrail
    assert (
        bearer(make_api, scopes=["read", "ingest"]).patch(path, {"max_steps": 1}, format="json").status_code
        == 403
    )
    agent.refresh_from_db()
    assert (agent.max_steps, agent.max_cost_usd) == (40, Decimal("3.00"))
    changes = AuditEntry.objects.filter(object_type="agent").order_by("at", "id")
    assert [(entry.before, entry.after) for entry in changes] == [
        ({"max_steps": None}, {"max_steps": 40}),
        ({"max_cost_usd": None}, {"max_cost_usd": "2.000000"}),
        ({"max_cost_usd": "2.000000"}, {"max_cost_usd": "3.000000"}),
    ]
    assert changes.last().who.startswith("token test")
