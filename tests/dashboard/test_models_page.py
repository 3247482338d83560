"""The Models page: shares of calls, tokens and dollars per model and tier, worked out here by brute force
from the ledger fixture's events; the flagship share against its target; the org-wide tier mapping
changed by the roles that may (audited) and refused to the others."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from finops.audit.models import AuditEntry
from finops.ledger.tokens import TOKEN_TYPES
from finops.modeltiers.models import ModelTier
from finops.modeltiers.selectors import tier_map
from ingest.writer import events_ingest
from tests.dashboard.conftest import PROVIDER, UNPRICED_MODEL, event, expected_cost
from tests.factories import MembershipFactory, UserFactory

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}
TIERS = {"m1": "flagship", "m2": "small"}  # the mystery model stays unmapped


def rows_of(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def member(ledger, role: str, team: str = "support"):
    user = UserFactory(username=f"{role}-of-{team}")
    MembershipFactory(user=user, team=ledger.teams[team], role=role)
    return user


@pytest.fixture
def mapped(ledger):
    for model, tier in TIERS.items():
        ModelTier.objects.create(provider=PROVIDER, model=model, tier=tier)
    return ledger


def brute_force(ledger, *, team: str) -> dict[str, dict]:
    """Per tier: calls, tokens and priced cost of the team's March events, straight from the events."""
    totals: dict[str, dict] = {}
    for sent in ledger.events:
        if sent["team"] != team or not sent["timestamp"].startswith("2025-03"):
            continue
        tier = TIERS.get(sent["model"], "unmapped")
        entry = totals.setdefault(tier, {"calls": 0, "tokens": 0, "cost": Decimal(0), "unpriced": 0})
        entry["calls"] += 1
        entry["tokens"] += sum(sent["usage"].get(token_type, 0) for token_type in TOKEN_TYPES)
        if sent["model"] == UNPRICED_MODEL:
            entry["unpriced"] += 1
        else:
            entry["cost"] += expected_cost(sent["model"], sent["usage"])
    return totals


def test_the_tier_table_is_the_events_split_by_tier_and_only_the_persons_team(client, mapped, support_member):
    expected = brute_force(mapped, team="support")
    all_calls = sum(entry["calls"] for entry in expected.values())
    all_tokens = sum(entry["tokens"] for entry in expected.values())
    all_cost = sum((entry["cost"] for entry in expected.values()), Decimal(0))
    client.force_login(support_member)

    response = client.get("/models/", {**MARCH, "export": "tiers"})

    assert (
        response["Content-Disposition"]
        == 'attachment; filename="finops-models-tiers-2025-03-01_2025-03-31.csv"'
    )
    head, *rows = rows_of(response)
    assert head[:3] == ["Tier", "Calls", "Share of calls"]
    by_tier = {row[0]: row for row in rows}
    for tier in ("flagship", "mid", "small", "unmapped"):
        entry = expected.get(tier, {"calls": 0, "tokens": 0, "cost": Decimal(0), "unpriced": 0})
        row = by_tier[tier]
        assert int(row[1]) == entry["calls"]
        assert float(row[2]) == pytest.approx(entry["calls"] / all_calls)
        assert int(row[3]) == entry["tokens"]
        assert float(row[4]) == pytest.approx(entry["tokens"] / all_tokens)
        if entry["calls"] and entry["unpriced"] == entry["calls"]:
            assert row[5:7] == ["", ""]  # no call priced: unknown, never $0
        else:
            assert Decimal(row[5]) == entry["cost"]  # exact: billing's March m1 call is not in it
            assert float(row[6]) == pytest.approx(float(entry["cost"] / all_cost))
        assert int(row[7]) == entry["unpriced"]
    assert by_tier["All"][1:2] == [str(all_calls)]


def test_the_flagship_share_is_flagship_calls_over_every_call_against_the_target(
    client, mapped, support_member
):
    expected = brute_force(mapped, team="support")
    all_calls = sum(entry["calls"] for entry in expected.values())
    share = expected["flagship"]["calls"] / all_calls  # support: 3 of 7 calls on m1
    client.force_login(support_member)

    html = client.get("/models/", MARCH).content.decode()

    card = html[html.index('id="flagship-share"') : html.index('id="unmapped"')]
    assert f"{share * 100:.1f}%" in card
    assert "Target: below 20%" in card
    assert "off target" in card  # 43% of calls is over the 20% target
    assert f"{expected['flagship']['calls']} of {all_calls} calls" in card
    unmapped = html[html.index('id="unmapped"') : html.index('id="total-spend"')]
    assert f"acme/{UNPRICED_MODEL}" in unmapped
    upper = (expected["flagship"]["calls"] + expected["unmapped"]["calls"]) / all_calls
    assert f"{upper * 100:.1f}%" in unmapped


def test_the_model_table_downloads_each_models_exact_numbers(client, mapped, finops_user):
    client.force_login(finops_user)
    response = client.get("/models/", {**MARCH, "team": "billing", "export": "models"})
    head, *rows = rows_of(response)
    assert head[:4] == ["Provider", "Model", "Tier", "Calls"]
    billing_march = [
        e for e in mapped.events if e["team"] == "billing" and e["timestamp"].startswith("2025-03")
    ]
    [row] = rows
    assert row[:4] == [PROVIDER, "m1", "flagship", str(len(billing_march))]
    assert int(row[5]) == sum(sum(e["usage"].values()) for e in billing_march)
    assert Decimal(row[7]) == sum(expected_cost("m1", e["usage"]) for e in billing_march)  # exact digits
    assert [row[4], row[6], row[8], row[9]] == ["1.0", "1.0", "1.0", "0"]  # the whole of billing's March


def test_flagship_share_per_day(client, mapped, support_member):
    client.force_login(support_member)
    head, *rows = rows_of(client.get("/models/", {**MARCH, "export": "flagship-by-day"}))
    expected = {}
    for sent in mapped.events:
        if sent["team"] == "support" and sent["timestamp"].startswith("2025-03"):
            day = expected.setdefault(sent["timestamp"][:10], [0, 0, 0])
            day[0] += 1
            day[1] += TIERS.get(sent["model"]) == "flagship"
            day[2] += sent["model"] not in TIERS
    assert {row[0]: [int(row[1]), int(row[2]), int(row[3])] for row in rows} == expected
    for row in rows:
        assert float(row[4]) == pytest.approx(int(row[2]) / int(row[1]))


def test_another_teams_page_is_a_404_and_an_empty_window_says_so(client, mapped, support_member):
    client.force_login(support_member)
    assert client.get("/models/", {**MARCH, "team": "billing"}).status_code == 404
    assert client.get("/models/", {**MARCH, "agent": "collector"}).status_code == 404
    html = client.get("/models/", {"start": "2024-01-01", "end": "2024-01-31"}).content.decode()
    assert 'id="empty-state"' in html
    assert "No calls in this window" in html
    assert 'id="mapping-panel"' in html  # the mapping is still there to read


def test_a_dated_snapshot_takes_its_models_tier_and_an_unknown_model_is_unmapped(db):
    tiers = tier_map()
    assert tiers.tier_of(provider="anthropic", model="claude-sonnet-4-5-20250929") == "mid"
    assert tiers.tier_of(provider="openai", model="gpt-4o-mini") == "small"
    assert tiers.tier_of(provider="anthropic", model="claude-opus-4-1") == "flagship"
    assert tiers.tier_of(provider="acme", model="acme-large-2") == "unmapped"
    ModelTier.objects.create(provider="anthropic", model="claude-sonnet-4-5-20250929", tier="small")
    assert tier_map().tier_of(provider="anthropic", model="claude-sonnet-4-5-20250929") == "small"


def test_an_ml_member_maps_a_model_for_the_whole_organisation_and_it_is_audited(client, ledger, finops_user):
    ml = member(ledger, "ml")
    client.force_login(ml)
    page = client.get("/models/", MARCH).content.decode()
    assert 'id="tier-form"' in page

    response = client.post(
        "/models/?start=2025-03-01&end=2025-03-31", {"provider": "acme", "model": "m2", "tier": "mid"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/models/?start=2025-03-01&end=2025-03-31"
    row = ModelTier.objects.get(provider="acme", model="m2")
    assert row.tier == "mid"
    entry = AuditEntry.objects.get(object_type="model_tier", object_id=str(row.pk))
    assert (entry.action, entry.who, entry.team_id) == ("create", ml.username, None)
    assert entry.after == {"provider": "acme", "model": "m2", "tier": "mid"}
    # the page's shares follow the new tier at once
    head, *rows = rows_of(client.get("/models/", {**MARCH, "export": "models"}))
    assert next(row[:3] for row in rows if row[1] == "m2") == ["acme", "m2", "mid"]

    client.post("/models/", {"provider": "ACME", "model": "M2", "tier": "small"})  # the same row, any case
    assert ModelTier.objects.get(provider="acme", model="m2").tier == "small"
    update = AuditEntry.objects.filter(object_type="model_tier", action="update").get()
    assert (update.before["tier"], update.after["tier"]) == ("mid", "small")

    client.post("/models/", {"remove": str(row.pk)})
    assert not ModelTier.objects.filter(pk=row.pk).exists()
    assert AuditEntry.objects.filter(object_type="model_tier", action="delete").count() == 1
    # entries of no team: the audit page shows them to those who see every team
    client.force_login(finops_user)
    audit = client.get("/audit/", {"object_type": "model_tier"}).content.decode()
    assert audit.count(f"{ml.username}</td>") == 3


@pytest.mark.parametrize("role", ["viewer", "sre", "tech_lead", "pm"])
def test_other_roles_read_the_mapping_but_a_post_is_refused(client, ledger, role):
    client.force_login(member(ledger, role))
    page = client.get("/models/", MARCH).content.decode()
    assert 'id="tier-form"' not in page
    assert "claude-sonnet-4-5" in page  # read-only, but shown
    before = list(ModelTier.objects.values_list("provider", "model", "tier").order_by("pk"))
    gpt = ModelTier.objects.get(provider="openai", model="gpt-4o")

    assert client.post("/models/", {"provider": "acme", "model": "m1", "tier": "small"}).status_code == 403
    assert client.post("/models/", {"remove": str(gpt.pk)}).status_code == 403

    assert list(ModelTier.objects.values_list("provider", "model", "tier").order_by("pk")) == before
    assert not AuditEntry.objects.filter(object_type="model_tier").exists()


def test_a_bad_form_names_the_field(client, ledger):
    client.force_login(member(ledger, "ml"))
    response = client.post("/models/", {"provider": "acme", "model": "m1", "tier": "huge"})
    assert response.status_code == 200
    assert "Select a valid choice. huge is not one of the available choices." in response.content.decode()
    assert not ModelTier.objects.filter(provider="acme").exists()


def test_the_page_reads_rollups_only_in_a_fixed_number_of_queries(client, mapped, support_member):

    client.force_login(support_member)

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/models/", MARCH).status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    before = queries()
    more = [
        event(f"more-{index}", day=f"2025-03-{10 + index}", team="support", agent="writer", model=f"extra-{index}",
              uncached_input=1_000)
        for index in range(5)
    ]  # fmt: skip
    events_ingest(raw_events=more, principal=None, source="test")
    after = queries()
    assert len(after) == len(before)  # five more models and days: not one more query
    assert not [sql for sql in after if "ledger_call" in sql]  # never the calls at request time
