"""The Guardrails page: allowances with live usage and time to reset, added and deleted by those who may
(audited), read only for the others, another team's never shown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from finops.audit.models import AuditEntry
from finops.guardrails.models import Allowance
from finops.guardrails.services import allowance_create
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def signed_in(role: str, team) -> Client:
    client = Client()
    client.force_login(MembershipFactory(team=team, role=role, user=UserFactory()).user)
    return client


@pytest.mark.django_db
def test_an_sre_adds_and_deletes_an_allowance_and_sees_it_audited():
    support = TeamFactory(slug="support")
    sre = signed_in("sre", support)
    page = sre.get("/guardrails/")
    assert page.status_code == 200 and "Add an allowance" in page.content.decode()
    added = sre.post(
        "/guardrails/",
        {
            "team": "support",
            "agent": "refund-bot",
            "window": "day",
            "limit_usd": "25",
            "warn_at": "0.8",
            "action": "deny",
        },
    )
    assert added.status_code == 302
    allowance = Allowance.objects.get()
    html = sre.get("/guardrails/").content.decode()
    assert "support/refund-bot" in html and "$0.00 + $0.00 of $25.00" in html
    audit = html[html.index('id="audit"') :]  # the audit log: the creation, with its limit
    assert (
        '<span class="action create">create</span>' in audit and f"<td>allowance {allowance.pk}</td>" in audit
    )
    assert "<code>limit_usd</code>: <ins>25.000000</ins>" in audit
    assert sre.post(f"/guardrails/allowances/{allowance.pk}/delete").status_code == 302
    assert not Allowance.objects.exists()
    assert list(AuditEntry.objects.values_list("action", flat=True).order_by("id")) == ["create", "delete"]


@pytest.mark.django_db
def test_a_form_without_a_limit_says_so():
    sre = signed_in("sre", TeamFactory(slug="support"))
    answer = sre.post(
        "/guardrails/", {"team": "support", "window": "day", "warn_at": "0.8", "action": "deny"}
    )
    assert answer.status_code == 200
    assert "Give a dollar limit, a token limit, or both." in answer.content.decode()
    assert not Allowance.objects.exists()


@pytest.mark.django_db
def test_a_viewer_reads_and_another_team_sees_nothing():
    support, search = TeamFactory(slug="support"), TeamFactory(slug="search")
    allowance = allowance_create(principal=None, team=support, agent=None, window="week", limit_tokens=5000)
    viewer = signed_in("viewer", support)
    html = viewer.get("/guardrails/").content.decode()
    assert "5,000" in html and "Add an allowance" not in html and "Delete" not in html
    assert viewer.post(f"/guardrails/allowances/{allowance.pk}/delete").status_code == 403  # seen
    forged = viewer.post(
        "/guardrails/",
        {"team": "support", "window": "day", "limit_usd": "1", "warn_at": "0.8", "action": "deny"},
    )
    assert forged.status_code == 403 and Allowance.objects.count() == 1  # not a team it may change
    outsider = signed_in("sre", search)
    assert "No allowances yet." in outsider.get("/guardrails/").content.decode()
    assert outsider.post(f"/guardrails/allowances/{allowance.pk}/delete").status_code == 404
    assert Allowance.objects.filter(limit_usd=Decimal(1)).count() == 0
