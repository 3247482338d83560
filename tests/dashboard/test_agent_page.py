"""The agent page: its runs against the cost SLO, worked out here from the ledger fixture's events, and
its settings changed by the roles that may (the same rule as PATCH /api/v1/agents)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from finops.audit.models import AuditEntry
from finops.ledger.models import Agent
from tests.factories import MembershipFactory, UserFactory

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


def text(html: str, element_id: str) -> str:
    match = re.search(rf'<(article|section)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"{element_id} not on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(2)))


def member(ledger, role: str):
    user = UserFactory(username=f"{role}-of-support")
    MembershipFactory(user=user, team=ledger.teams["support"], role=role)
    return user


def test_the_agents_runs_against_its_cost_slo(client, ledger):
    triage = ledger.agents["triage"]  # cost SLO $0.50, ideal 2 steps
    t1 = ledger.spend(task_id="t1")  # success, 2 steps, 3 March
    t2 = ledger.spend(task_id="t2")  # failure, 3 steps, 4 March
    client.force_login(member(ledger, "pm"))
    html = client.get(f"/agents/{triage.pk}/", MARCH).content.decode()

    per_success = t1 + t2  # both runs' cost over the one success
    assert f"${per_success:.2f}" in text(html, "agent-cost-per-task")
    assert f"${per_success - Decimal('0.50'):.2f} over the SLO of $0.50" in text(html, "agent-cost-per-task")
    assert "1 successful, 1 failed, 0 abandoned, 0 killed" in text(html, "agent-outcomes")
    # percentile_disc over the two runs' costs: the cheaper at p50, the dearer at p95
    cheaper, dearer = sorted([t1, t2])
    assert f"${cheaper:.4f} p50" in text(html, "agent-cost-per-run")
    assert f"p95 ${dearer:.4f} over 2 ended runs" in text(html, "agent-cost-per-run")
    per_day = re.search(r"<caption>Runs ended per UTC day.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", per_day)]
    assert cells == [
        "2025-03-03",
        "1",
        "1",
        f"${t1:.4f}",
        f"${t1:.4f}",
        "2025-03-04",
        "1",
        "0",
        f"${t2:.4f}",
        "—",
    ]
    steps = re.search(r"<caption>Ended runs by how many calls.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    assert re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", steps) == ["2", "1", "3", "1"]


@pytest.mark.parametrize(
    ("role", "editable"),
    [
        (
            "pm",
            {
                "cost_slo_usd",
                "ideal_steps",
                "target_cache_hit_rate",
                "target_token_efficiency",
                "target_step_inflation",
            },
        ),
        ("sre", {"max_steps", "max_cost_usd"}),
        (
            "tech_lead",
            {
                "ideal_steps",
                "max_steps",
                "max_cost_usd",
                "target_cache_hit_rate",
                "target_token_efficiency",
                "target_step_inflation",
            },
        ),
    ],
)
def test_each_role_changes_its_own_settings_and_no_other(client, ledger, role, editable):
    triage = ledger.agents["triage"]
    person = member(ledger, role)
    client.force_login(person)
    html = client.get(f"/agents/{triage.pk}/", MARCH).content.decode()
    shown = set(re.findall(r'<input[^>]*name="(\w+)"(?![^>]*disabled)[^>]*>', text_of_form(html)))
    assert shown - {"csrfmiddlewaretoken"} == editable
    wanted = {"cost_slo_usd": "0.75", "ideal_steps": "3", "max_steps": "40", "max_cost_usd": "2.5",
              "target_cache_hit_rate": "0.6", "target_token_efficiency": "0.2", "target_step_inflation": "1.5"}  # fmt: skip
    before = Agent.objects.values(*wanted).get(pk=triage.pk)
    refused = client.post(f"/agents/{triage.pk}/", wanted)  # with another role's fields: none is saved
    assert refused.status_code == 403 and Agent.objects.values(*wanted).get(pk=triage.pk) == before
    response = client.post(
        f"/agents/{triage.pk}/?start=2025-03-01", {name: wanted[name] for name in editable}
    )
    assert response.status_code == 302 and response["Location"] == f"/agents/{triage.pk}/?start=2025-03-01"
    after = Agent.objects.values(*wanted).get(pk=triage.pk)
    for name in before:  # the role's fields take the new value, the others keep theirs
        expected = type(before[name] or Decimal(0))(wanted[name]) if name in editable else before[name]
        assert after[name] == expected, name
    entry = AuditEntry.objects.get(object_type="agent", object_id=str(triage.pk))
    assert entry.who == person.username and set(entry.after) == {
        name for name in editable if str(before[name]) != wanted[name]
    }


def text_of_form(html: str) -> str:
    return re.search(r'<section class="panel" id="agent-settings">(.*?)</section>', html, re.S).group(1)


def test_a_viewer_sees_the_settings_and_may_not_post_them(client, ledger):
    triage = ledger.agents["triage"]
    client.force_login(member(ledger, "viewer"))
    html = client.get(f"/agents/{triage.pk}/").content.decode()
    settings = text_of_form(html)
    assert "<form" not in settings and "<dd>$0.5000</dd>" in settings and "<dd>1.4×</dd>" in settings
    assert client.post(f"/agents/{triage.pk}/", {"cost_slo_usd": "9"}).status_code == 403
    assert Agent.objects.get(pk=triage.pk).cost_slo_usd == Decimal("0.50")
    assert not AuditEntry.objects.filter(object_type="agent").exists()


def test_an_agent_of_another_team_is_not_found(client, ledger):
    client.force_login(member(ledger, "tech_lead"))
    collector = ledger.agents["collector"]  # billing's
    assert client.get(f"/agents/{collector.pk}/").status_code == 404
    assert client.post(f"/agents/{collector.pk}/", {"max_steps": "1"}).status_code == 404
    assert Agent.objects.get(pk=collector.pk).max_steps is None
