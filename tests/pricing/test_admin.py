"""The admin: prices are changed by finops and admin users only, and saving or deleting an override or a
discount is audited and queues its re-pricing run."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from finops.accounts.models import ApiToken, OrgRole, TeamRole
from finops.accounts.services import api_token_create
from finops.audit.models import AuditEntry
from finops.ledger.models import Agent
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceRun
from finops.pricing.tasks import reprice_run
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

OVERRIDE_ADD = "/admin/pricing/modelpriceoverride/add/"
DISCOUNT_ADD = "/admin/pricing/negotiateddiscount/add/"
OVERRIDE_FORM = {
    "provider": "acme",
    "model": "acme-large-2",
    "effective_from_0": "2026-01-01",
    "effective_from_1": "00:00:00",
    "uncached_input_per_mtok": "2",
    "output_per_mtok": "10",
    "cache_read_per_mtok": "",
    "cache_write_5m_per_mtok": "",
    "cache_write_1h_per_mtok": "",
    "reasoning_per_mtok": "",
    "note": "contract price",
}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(reprice_run, "delay", lambda *args: calls.append(args))
    return calls


def test_finops_user_adds_an_override_and_repricing_is_queued_after_commit(
    db, enqueued, django_capture_on_commit_callbacks
):
    finops_user = UserFactory(org_role=OrgRole.FINOPS, is_staff=True)
    client = logged_in(finops_user)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(OVERRIDE_ADD, OVERRIDE_FORM)

    assert response.status_code == 302, response.content.decode()[:2000]
    override = ModelPriceOverride.objects.get(provider="acme", model="acme-large-2")
    assert override.uncached_input_per_mtok == Decimal("2")
    assert override.created_by == finops_user
    assert len(callbacks) == 1
    run = RepriceRun.objects.get()
    assert enqueued == [(run.pk,)]
    assert (run.object_type, run.object_id, run.requested_by) == (
        "price_override",
        str(override.pk),
        finops_user,
    )
    assert run.scopes == [
        {"provider": "acme", "model": "acme-large-2", "start": "2026-01-01T00:00:00+00:00", "end": None}
    ]
    assert AuditEntry.objects.get().action == "create"

    # deleting it is audited and re-priced too
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/pricing/modelpriceoverride/{override.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == ["create", "delete"]
    assert len(enqueued) == 2 and RepriceRun.objects.count() == 2


def test_a_broker_outage_keeps_the_price_and_tells_the_user(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args):
        raise ConnectionRefusedError("broker unreachable")

    monkeypatch.setattr(reprice_run, "delay", broker_down)
    client = logged_in(UserFactory(org_role=OrgRole.ADMIN, is_staff=True))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(OVERRIDE_ADD, OVERRIDE_FORM)

    assert response.status_code == 302
    assert ModelPriceOverride.objects.filter(model="acme-large-2").exists()
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert any("periodic repricing sweep" in text for text in texts), texts


def test_nothing_is_queued_when_the_save_rolls_back(db, enqueued, django_capture_on_commit_callbacks):
    client = logged_in(UserFactory(org_role=OrgRole.FINOPS, is_staff=True))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(OVERRIDE_ADD, {**OVERRIDE_FORM, "output_per_mtok": ""})  # invalid form

    assert response.status_code == 200
    assert enqueued == []


@pytest.mark.parametrize("team_role", [TeamRole.VIEWER, TeamRole.SRE, TeamRole.TECH_LEAD])
def test_team_roles_may_look_at_prices_but_not_change_them(db, enqueued, team_role):
    user = UserFactory(is_staff=True)
    MembershipFactory(user=user, team=TeamFactory(slug="support"), role=team_role)
    override = ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from="2026-01-01T00:00Z",
        uncached_input_per_mtok=1,
        output_per_mtok=2,
    )
    client = logged_in(user)

    assert client.get("/admin/pricing/modelpriceoverride/").status_code == 200
    assert client.post(OVERRIDE_ADD, {**OVERRIDE_FORM, "model": "other"}).status_code == 403
    assert (
        client.post(
            DISCOUNT_ADD,
            {"provider": "", "percent": "50", "effective_from_0": "2026-01-01", "effective_from_1": "00:00"},
        ).status_code
        == 403
    )
    assert (
        client.post(f"/admin/pricing/modelpriceoverride/{override.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert not ModelPriceOverride.objects.filter(model="other").exists()
    assert not NegotiatedDiscount.objects.exists()
    assert ModelPriceOverride.objects.filter(pk=override.pk).exists()
    assert enqueued == []


def test_finops_user_adds_a_negotiated_discount(db):
    finops_user = UserFactory(org_role=OrgRole.FINOPS, is_staff=True)

    response = logged_in(finops_user).post(
        DISCOUNT_ADD,
        {
            "provider": "anthropic",
            "percent": "12.5",
            "effective_from_0": "2026-10-01",
            "effective_from_1": "00:00:00",
            "note": "",
        },
    )

    assert response.status_code == 302
    discount = NegotiatedDiscount.objects.get()
    assert (discount.provider, discount.percent, discount.created_by) == (
        "anthropic",
        Decimal("12.5"),
        finops_user,
    )


def test_every_admin_page_renders_for_a_superuser(db):
    superuser = UserFactory(is_staff=True, is_superuser=True)
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="triage")
    token, _ = api_token_create(name="ci", scopes=["read"], team=team)
    client = logged_in(superuser)

    for path in [
        "/admin/",
        "/admin/pricing/modelpriceoverride/",
        OVERRIDE_ADD,
        "/admin/pricing/negotiateddiscount/",
        DISCOUNT_ADD,
        "/admin/ledger/agent/",
        f"/admin/ledger/agent/{agent.pk}/change/",
        "/admin/ledger/task/",
        "/admin/accounts/user/",
        "/admin/accounts/user/add/",
        f"/admin/accounts/user/{superuser.pk}/change/",
        "/admin/accounts/team/",
        f"/admin/accounts/team/{team.pk}/change/",
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{token.pk}/change/",
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
    token_page = client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    assert token.digest not in token_page
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403


def test_api_tokens_are_revoked_from_the_admin_by_org_admins(db):
    token, _ = api_token_create(name="ci", scopes=["read"])
    client = logged_in(UserFactory(org_role=OrgRole.ADMIN, is_staff=True))

    response = client.post(
        "/admin/accounts/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}
    )

    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_a_pm_changes_the_cost_slo_of_own_agents_but_not_the_kill_switch(db):
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="triage")
    other = AgentFactory(team=TeamFactory(slug="coding"), name="reviewer")
    pm = UserFactory(is_staff=True)
    MembershipFactory(user=pm, team=team, role=TeamRole.PM)
    client = logged_in(pm)

    response = client.post(
        f"/admin/ledger/agent/{agent.pk}/change/",
        {
            "cost_slo_usd": "0.30",
            "ideal_steps": "6",
            "max_steps": "999",
            "target_cache_hit_rate": "0.8",
            "target_token_efficiency": "0.2",
            "target_step_inflation": "1.3",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get(pk=agent.pk)
    assert agent.cost_slo_usd == Decimal("0.30")
    assert agent.ideal_steps == 6
    assert agent.max_steps is None  # a kill switch is for SREs and tech leads
    # another team's agent is not even there
    assert client.get(f"/admin/ledger/agent/{other.pk}/change/").status_code == 302
    assert "reviewer" not in client.get("/admin/ledger/agent/").content.decode()


def test_the_override_list_does_not_query_per_row(db, django_assert_max_num_queries):
    finops_user = UserFactory(org_role=OrgRole.FINOPS)
    for number in range(20):
        ModelPriceOverride.objects.create(
            provider="acme",
            model=f"acme-{number}",
            effective_from="2026-01-01T00:00Z",
            uncached_input_per_mtok=1,
            output_per_mtok=2,
            created_by=UserFactory(),
        )
    client = logged_in(finops_user)

    with django_assert_max_num_queries(12):
        assert client.get("/admin/pricing/modelpriceoverride/").status_code == 200
