"""The Overview page: numbers, filters, scoping, login, static plotly, query counts."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.dashboard.conftest import event
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}
EMPTY_STATE = "No calls in this window"


def dollars(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def card(html: str, card_id: str) -> str:
    """The text of one <article id=...> card, so a number is checked where it is shown."""
    match = re.search(rf'<article[^>]*id="{card_id}"[^>]*>(.*?)</article>', html, re.S)
    assert match, f"card {card_id} not on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1)))


def page(client, user, **params):
    client.force_login(user)
    response = client.get("/", params)
    assert response.status_code == 200
    return response.content.decode()


def test_member_sees_their_teams_numbers(client, ledger, support_member):
    html = page(client, support_member, **MARCH)

    support_spend = ledger.spend(team="support")
    assert support_spend == Decimal("5.43")  # 0.48 + 0.49 + 3 x 0.22 + 3.80, worked out by hand
    assert dollars(support_spend) in card(html, "total-spend")
    assert "7 calls" in card(html, "total-spend")
    # the writer's two calls have no task_id; only the priced one has a cost
    not_in_task = card(html, "not-in-task")
    assert "$3.80" in not_in_task and "2 calls" in not_in_task
    unpriced = card(html, "unpriced")
    assert " 1 " in unpriced and "Cost unknown" in unpriced
    # $/successful task: t1 (0.97) + t2 (0.66) over one success
    assert "$1.63" in card(html, "kpi-cost-per-task")
    # cache read 1,850,000 of 4,010,000 input tokens
    assert f"{1_850_000 / 4_010_000:.1%}" in card(html, "kpi-cache-hit")
    # useful output 30,000 of 2,645,000 tokens of t1 and t2
    assert f"{30_000 / 2_645_000:.2f}" in card(html, "kpi-efficiency")
    # steps 2 + 3 over ideal 2 + 2
    assert "1.25×" in card(html, "kpi-inflation")
    assert "Target: above 75%" in card(html, "kpi-cache-hit")
    assert "Target: above 0.18" in card(html, "kpi-efficiency")
    assert "Target: below 1.4×" in card(html, "kpi-inflation")
    assert "Tasks ended" in html and "1 successful, 1 failed, 0 abandoned, 0 killed" in card(html, "tasks")
    assert EMPTY_STATE not in html


def test_token_totals_are_shown(client, ledger, support_member):
    html = page(client, support_member, **MARCH)
    # uncached input of support's calls: 100k + 50k + 3 x 200k + 1M + 10k
    assert "1,760,000" in html
    assert "1,850,000" in html  # cache read
    assert "30,000" in html  # reasoning
    for label in ("uncached input", "cache read", "cache write 5m", "cache write 1h", "output", "reasoning"):
        assert label in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"team": "billing"}, Decimal("10.00")),
        ({"team": "support"}, Decimal("5.43")),
        ({}, Decimal("15.43")),
        ({"team": "support", "agent": "writer"}, Decimal("3.80")),
        ({"team": "support", "agent": "triage"}, Decimal("1.63")),
        ({"agent": "collector"}, Decimal("10.00")),
    ],
)
def test_team_and_agent_filters_change_the_numbers(client, ledger, finops_user, params, expected):
    match = {key: value for key, value in params.items() if key in ("team", "agent")}
    assert ledger.spend(**match) == expected
    html = page(client, finops_user, **MARCH, **params)
    assert dollars(expected) in card(html, "total-spend")
    if params.get("team") == "support":  # the agent dropdown lists the selected team's agents only
        assert 'value="triage"' in html and 'value="collector"' not in html


def test_date_range_changes_the_numbers(client, ledger, finops_user):
    april = page(client, finops_user, start="2025-04-01", end="2025-04-30", team="billing")
    assert ledger.spend(team="billing", start="2025-04-01", end="2025-05-01") == Decimal("2.00")
    assert "$2.00" in card(april, "total-spend")

    one_day = page(client, finops_user, start="2025-03-04", end="2025-03-04", team="support")
    assert ledger.spend(team="support", start="2025-03-04", end="2025-03-05") == Decimal("0.66")
    assert "$0.6600" in card(one_day, "total-spend")  # under a dollar: more places, never rounded to cents
    assert "3 calls" in card(one_day, "total-spend")

    nothing = page(client, finops_user, start="2024-01-01", end="2024-01-31")
    assert EMPTY_STATE in nothing
    assert "POST /api/v1/events" in nothing and "finops demo" in nothing


def test_stack_by_is_kept_in_the_url(client, ledger, finops_user):
    html = page(client, finops_user, **MARCH, stack_by="model")
    assert re.search(r'<option value="model" selected>', html)
    assert "acme/m1" in html and "acme/m2" in html
    tokens = page(client, finops_user, **MARCH, stack_by="token_type")
    assert re.search(r'<option value="token_type" selected>', tokens)


def test_member_of_one_team_gets_404_for_another(client, ledger, support_member):
    client.force_login(support_member)
    assert client.get("/", {"team": "billing", **MARCH}).status_code == 404
    assert client.get("/", {"team": "billing", "agent": "collector", **MARCH}).status_code == 404
    assert client.get("/", {"agent": "collector", **MARCH}).status_code == 404
    assert client.get("/", {"team": "no-such-team"}).status_code == 404

    html = page(client, support_member, **MARCH)
    assert 'value="billing"' not in html and "Billing" not in html
    assert "collector" not in html
    assert "$15.43" not in html and "$10.00" not in html  # neither billing's spend nor the org's


def test_invalid_team_value_is_a_404_not_a_wider_scope(client, ledger, support_member):
    client.force_login(support_member)
    assert client.get("/", {"team": "not a slug!"}).status_code == 404
    # a bad date does not drop the team filter either
    assert client.get("/", {"team": "billing", "start": "yesterday"}).status_code == 404


@pytest.mark.parametrize("params", [{"team": "sup\x00port"}, {"agent": "triage\x00"}])
def test_a_nul_byte_in_team_or_agent_is_a_404_not_a_server_error(client, ledger, support_member, params):
    client.force_login(support_member)
    assert client.get("/", params).status_code == 404


@pytest.mark.parametrize("params", [{"start": "9999-12-31"}, {"end": "9999-12-31", "start": "9999-12-01"}])
def test_a_date_at_the_end_of_the_calendar_is_refused_not_a_server_error(
    client, ledger, support_member, params
):
    html = page(client, support_member, **params)
    assert "The invalid dates were replaced" in html


def test_anonymous_is_sent_to_login(client, db):
    response = client.get("/", {"team": "support"})
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


def test_login_page_and_logging_in_and_out(client, db):
    UserFactory(username="lee")
    login_page = client.get("/login/")
    assert login_page.status_code == 200
    assert b'name="username"' in login_page.content and b'name="password"' in login_page.content

    response = client.post("/login/", {"username": "lee", "password": "pw-for-tests"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200

    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_navigation_depends_on_role(client, ledger, support_member, finops_user):
    member_html = page(client, support_member)
    assert 'href="/api/v1/docs"' in member_html
    assert 'href="/admin/"' not in member_html
    assert "Sam Support" in member_html
    assert re.search(r'<form method="post" action="/logout/">', member_html)

    assert 'href="/admin/"' in page(client, finops_user)
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    assert 'href="/admin/"' in page(client, superuser)


def test_plotly_is_served_by_the_app_never_a_cdn(client, ledger, support_member):
    html = page(client, support_member, **MARCH)
    script_sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    assert "/static/plotly/plotly.min.js" in script_sources
    assert not [source for source in script_sources if re.match(r"(https?:)?//", source)]
    assert not re.search(r'<link[^>]*href="(https?:)?//', html)  # no external CSS or fonts either

    plotly_js = client.get("/static/plotly/plotly.min.js")
    assert plotly_js.status_code == 200
    body = b"".join(plotly_js.streaming_content) if plotly_js.streaming else plotly_js.content
    assert len(body) > 1_000_000 and b"plotly" in body[:2000].lower()
    assert client.get("/static/dashboard/charts.js").status_code == 200
    assert client.get("/static/dashboard/dashboard.css").status_code == 200


def test_every_chart_has_a_table(client, ledger, support_member):
    html = page(client, support_member, **MARCH)
    charts = re.findall(r'data-figure="([^"]+)"[^>]*role="img"', html)
    assert set(charts) == {"spend-by-day-data", "cache-hit-by-day-data", "tokens-by-type-data"}
    # every element id is unique, so each figure's JSON is found by getElementById
    element_ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(element_ids) == len(set(element_ids))
    assert html.count('<details class="chart-table">') == len(charts)
    # the spend table's total row is the exact total, at the precision its smallest amount (0.66) needs
    assert re.search(r"<tfoot><tr><th scope=\"row\">Total</th>.*?\$5\.4300</td></tr></tfoot>", html, re.S)


def test_cost_slo_is_the_target_when_one_agent_is_selected(client, ledger, finops_user):
    html = page(client, finops_user, **MARCH, team="support", agent="triage")
    cost_card = card(html, "kpi-cost-per-task")
    assert "$1.63" in cost_card
    assert "under $0.5000" in cost_card  # triage's cost SLO
    assert "off target" in cost_card
    assert "on target" in card(page(client, finops_user, **MARCH, team="billing"), "kpi-inflation")


def test_empty_state_for_a_new_team(client, db):
    newcomer = UserFactory(username="new")
    MembershipFactory(user=newcomer, team=TeamFactory(slug="fresh"))
    html = page(client, newcomer)
    assert EMPTY_STATE in html
    assert "plotly.min.js" not in html


def test_overview_query_count_does_not_grow_with_teams_and_agents(client, ledger, finops_user):
    from ingest.writer import events_ingest

    client.force_login(finops_user)
    client.get("/", MARCH)  # warm the session
    with CaptureQueriesContext(connection) as few:
        assert client.get("/", {**MARCH, "stack_by": "agent"}).status_code == 200

    many_events = []
    for team_number in range(6):
        team = TeamFactory(slug=f"extra-{team_number}")
        for agent_number in range(4):
            agent = AgentFactory(team=team, name=f"bot-{agent_number}")
            many_events.append(
                event(f"x-{team.slug}-{agent.name}", day="2025-03-10", team=team.slug, agent=agent.name,
                      uncached_input=1_000, output=100)
            )  # fmt: skip
    events_ingest(raw_events=many_events, principal=None, source="test")
    with CaptureQueriesContext(connection) as many:
        assert client.get("/", {**MARCH, "stack_by": "agent"}).status_code == 200
    assert len(many) == len(few), [query["sql"] for query in many.captured_queries]


def test_overview_query_budget(client, ledger, support_member, django_assert_max_num_queries):
    client.force_login(support_member)
    # 12 for the page, 2 for the navigation's count of firing alerts (the person's teams, then the count)
    with django_assert_max_num_queries(14):
        assert client.get("/", {**MARCH, "team": "support", "agent": "triage"}).status_code == 200


def test_names_from_events_are_escaped(client, ledger, finops_user):
    from ingest.writer import events_ingest

    hostile = "</script><script>alert(1)</script>"
    result = events_ingest(
        raw_events=[event("x-1", day="2025-03-06", team="support", agent=hostile, uncached_input=1_000)],
        principal=None,
        source="test",
    )
    assert result.accepted == 1, result.rejected
    html = page(client, finops_user, **MARCH, stack_by="agent")
    assert "<script>alert(1)" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html  # the dropdown shows it, escaped
