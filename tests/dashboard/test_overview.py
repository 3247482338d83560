"""The Overview page: numbers, filters, scoping, login, static plotly, query counts."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.figures import stable_colour
from dashboard.forms import OverviewFilterForm, overview_filters
from finops.accounts.models import Team
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
    if params.get("team") == "support":  # the agent dropdown offers the selected team's agents only
        assert (
            '<option value="triage" data-teams="support"' in html
            and 'data-teams="support" hidden' not in html
        )
        assert '<option value="collector" data-teams="billing" hidden>' in html  # shown if billing is chosen


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
    assert "Ensure this value is less than or equal to" in html
    assert "Showing the last 30 days instead of those dates." in html


def test_an_invalid_stack_by_is_named_and_only_it_is_replaced(client, ledger, support_member):
    html = page(client, support_member, **MARCH, stack_by="xyz")
    assert "<code>stack_by</code>: Select a valid choice. xyz is not one of the available choices." in html
    assert "Stacked by team instead." in html and "dates" not in error_box(html)
    assert dollars(ledger.spend(team="support")) in card(html, "total-spend")  # March, as asked


def error_box(html: str) -> str:
    return re.search(r'<div class="error" role="alert">(.*?)</div>', html, re.S).group(1)


def test_the_default_window_is_the_last_30_days_and_presets_name_theirs(client, ledger, support_member):
    today = datetime.now(UTC).date()
    html = page(client, support_member)
    first = today - timedelta(days=29)
    assert f'value="{first.isoformat()}"' in html and f'value="{today.isoformat()}"' in html
    assert re.search(r'<a href="\?period=30d" aria-current="true">Last 30 days</a>', html)
    # a preset link keeps the team and stack and drops the dates
    linked = page(client, support_member, **MARCH, team="support", stack_by="agent")
    assert '<a href="?team=support&amp;stack_by=agent&amp;period=7d">Last 7 days</a>' in linked
    assert "aria-current" not in re.search(r'<nav class="presets".*?</nav>', linked, re.S).group(0)


@pytest.mark.parametrize(
    ("period", "today", "window"),
    [
        ("7d", date(2026, 12, 3), (date(2026, 11, 27), date(2026, 12, 3))),
        ("30d", date(2026, 12, 3), (date(2026, 11, 4), date(2026, 12, 3))),
        ("90d", date(2026, 3, 1), (date(2025, 12, 2), date(2026, 3, 1))),
        ("this_month", date(2026, 12, 3), (date(2026, 12, 1), date(2026, 12, 3))),
        ("last_month", date(2026, 1, 15), (date(2025, 12, 1), date(2025, 12, 31))),
        ("last_month", date(2024, 3, 31), (date(2024, 2, 1), date(2024, 2, 29))),
    ],
)
def test_a_period_is_its_calendar_window(period, today, window):
    filters = overview_filters(OverviewFilterForm({"period": period, **MARCH}), today=today)
    assert (filters.start, filters.end, filters.period) == (*window, period)  # the preset wins over dates
    dates = overview_filters(OverviewFilterForm({"start": window[0], "end": window[1]}), today=today)
    assert dates.period == period  # dates that are a preset's window show as that preset


def spend_colours(html: str) -> dict[str, str]:
    figure = json.loads(
        re.search(r'<script id="spend-by-day-data" type="application/json">(.*?)</script>', html, re.S).group(
            1
        )
    )
    return {trace["name"]: trace["marker"]["color"] for trace in figure["data"]}


def test_a_team_keeps_its_colour_across_windows(client, ledger, finops_user):
    support, billing = (Team.objects.get(slug=slug) for slug in ("support", "billing"))
    march = spend_colours(page(client, finops_user, **MARCH, stack_by="team"))
    april = spend_colours(page(client, finops_user, start="2025-04-01", end="2025-04-30", stack_by="team"))
    assert march == {"billing": stable_colour(billing.pk), "support": stable_colour(support.pk)}
    assert april["billing"] == march["billing"] and march["billing"] != march["support"]
    # the order of the stacks follows spend (billing first in March: $10.00 against $5.43)
    assert list(march) == ["billing", "support"]


def test_a_single_agent_chart_has_a_legend(client, ledger, support_member):
    html = page(client, support_member, **MARCH, team="support", agent="triage", stack_by="agent")
    figure = json.loads(
        re.search(r'<script id="spend-by-day-data" type="application/json">(.*?)</script>', html, re.S).group(
            1
        )
    )
    assert [trace["name"] for trace in figure["data"]] == ["support/triage"]
    assert figure["layout"]["showlegend"] is True


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
    # login lands on the person's home (dashboard/home.py); lee holds no role, so that is the Overview
    assert response.status_code == 302 and response["Location"] == "/home/"
    assert client.get("/home/")["Location"] == "/"
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
    # 12 for the page, 2 for the most expensive tasks (ended, running), 3 for the navigation (the person's
    # roles, and their teams and the count of their firing alerts)
    with django_assert_max_num_queries(17):
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


def test_the_heading_names_the_team_of_a_one_team_person(client, ledger, support_member, finops_user):
    heading = re.compile(r'<span class="scope">(.*?)</span>', re.S)
    assert heading.search(page(client, support_member, **MARCH)).group(1).strip() == "support"
    assert heading.search(page(client, finops_user, **MARCH)).group(1).strip() == "all your teams"
