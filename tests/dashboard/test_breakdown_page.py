"""The Token breakdown page: per agent, where input tokens go (from `input_breakdown`), the share that
carried none, and output against reasoning, computed here again from the events sent; scoped to the
person's teams; an empty state; its tables download as CSV with the same numbers."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from finops.accounts.models import Team
from finops.ledger.models import Call
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory

KNOWN = ("system", "tools", "history", "retrieval", "tool_results", "user")
INPUT = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
WINDOW = {"start": "2026-11-01", "end": "2026-11-30"}
SCOPES = [("support", "triage"), ("support", "writer"), ("billing", "collector")]


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def sent(db) -> list[dict]:
    TeamFactory(slug="support", name="Support")
    TeamFactory(slug="billing", name="Billing")
    rng = random.Random(5)
    events = []
    for number in range(150):
        team, agent = rng.choice(SCOPES)
        event = {
            "event_id": f"e{number}",
            "timestamp": f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:30:00Z",
            "team": team,
            "agent": agent,
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "usage": {name: rng.randint(0, 9_000) for name in (*INPUT, "output", "reasoning")},
        }
        if rng.random() < 0.7:
            event["input_breakdown"] = {key: rng.randint(0, 5_000) for key in rng.sample(KNOWN, 4)}
        events.append(event)
    events.append(dict(events[0], timestamp="2026-10-31T23:59:00Z"))  # a re-sent event: counted once
    events.append(  # before the window: not counted
        {**events[1], "event_id": "october", "timestamp": "2026-10-31T23:59:00Z"}
    )
    result = events_ingest(raw_events=events, principal=None, source="test")
    assert (result.accepted, result.duplicates) == (151, 1)
    return events[:150]


def expected(events: list[dict], *, team: str | None = None) -> dict:
    """Per (team, agent): category tokens, not-broken-down input, all input, output, reasoning."""
    totals = defaultdict(lambda: defaultdict(int))
    for event in events:
        if team and event["team"] != team:
            continue
        total = totals[(event["team"], event["agent"])]
        input_tokens = sum(event["usage"][name] for name in INPUT)
        total["input"] += input_tokens
        if "input_breakdown" in event:
            for key, value in event["input_breakdown"].items():
                total[key] += value
        else:
            total["not_broken_down"] += input_tokens
            total["calls_not_broken_down"] += 1
        total["output"] += event["usage"]["output"]
        total["reasoning"] += event["usage"]["reasoning"]
    return totals


@pytest.fixture
def support_member(sent):
    member = UserFactory(username="sam")
    MembershipFactory(user=member, team=Team.objects.get(slug="support"))
    return member


def test_the_agent_table_holds_the_brute_force_numbers(client, sent, support_member):
    client.force_login(support_member)
    response = client.get("/breakdown/", {**WINDOW, "export": "by-agent"})
    assert response.status_code == 200
    head, *rows = rows_of(response)
    assert head[:2] == ["Team", "Agent"]
    body = {(row[0], row[1]): dict(zip(head, row, strict=True)) for row in rows[:-1]}
    truth = expected(sent, team="support")
    assert set(body) == set(truth) == {("support", "triage"), ("support", "writer")}  # no billing row
    for key, total in truth.items():
        row = body[key]
        labels = ("System", "Tools", "History", "Retrieval", "Tool results", "User")
        for category, label in zip(KNOWN, labels, strict=True):
            assert int(row[label]) == total[category]
        assert int(row["Not broken down"]) == total["not_broken_down"]
        assert int(row["Input tokens (usage)"]) == total["input"]
        assert float(row["Input not broken down"]) == pytest.approx(total["not_broken_down"] / total["input"])
        assert (int(row["Output"]), int(row["Reasoning"])) == (total["output"], total["reasoning"])
    foot = dict(zip(head, rows[-1], strict=True))
    assert int(foot["Input tokens (usage)"]) == sum(total["input"] for total in truth.values())


def test_the_page_says_what_share_was_not_broken_down(client, sent, support_member):
    client.force_login(support_member)
    page = client.get("/breakdown/", WINDOW).content.decode()
    truth = expected(sent, team="support")
    not_broken = sum(total["not_broken_down"] for total in truth.values())
    share = not_broken / sum(total["input"] for total in truth.values())
    calls = sum(total["calls_not_broken_down"] for total in truth.values())
    assert f"{share * 100:.1f}%" in page
    assert f"{not_broken:,} input tokens of {calls:,} calls came with no" in page
    assert "collector" not in page and "Billing" not in page  # another team's agent and name


def test_category_table_over_every_team_for_finops(client, sent):
    client.force_login(UserFactory(username="fran", org_role="finops"))
    head, *rows = rows_of(client.get("/breakdown/", {**WINDOW, "export": "by-category"}))
    assert head == ["Part of the prompt", "Tokens", "Share", "Calls naming it"]
    truth = expected(sent)
    by_label = {row[0]: row for row in rows}
    whole = sum(sum(total[key] for key in (*KNOWN, "not_broken_down")) for total in truth.values())
    labels = ("system", "tools", "history", "retrieval", "tool results", "user")
    for key, label in zip(KNOWN, labels, strict=True):
        tokens = sum(total[key] for total in truth.values())
        assert int(by_label[label][1]) == tokens
        assert float(by_label[label][2]) == pytest.approx(tokens / whole)
        assert int(by_label[label][3]) == sum(1 for event in sent if key in event.get("input_breakdown", {}))
    assert int(by_label["not broken down"][3]) == sum(1 for event in sent if "input_breakdown" not in event)


def test_an_agent_filter_and_a_foreign_team(client, sent, support_member):
    client.force_login(support_member)
    head, *rows = rows_of(client.get("/breakdown/", {**WINDOW, "agent": "writer", "export": "by-agent"}))
    assert [(row[0], row[1]) for row in rows[:-1]] == [("support", "writer")]
    assert client.get("/breakdown/", {**WINDOW, "team": "billing"}).status_code == 404
    assert client.get("/breakdown/", {**WINDOW, "agent": "collector"}).status_code == 404


def test_empty_state(client, sent, support_member):
    client.force_login(support_member)
    page = client.get("/breakdown/", {"start": "2025-01-01", "end": "2025-01-31"}).content.decode()
    assert 'id="empty-state"' in page and "No calls in this window" in page
    assert "data-figure" not in page


def test_the_page_reads_no_call(client, sent, support_member):
    """Rollups only: the partitioned calls table is never named in the page's queries."""
    client.force_login(support_member)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/breakdown/", WINDOW).status_code == 200
    assert not [query for query in queries.captured_queries if Call._meta.db_table in query["sql"]]


def test_query_count_is_pinned(client, sent, support_member, django_assert_num_queries):
    """Session and person (2), the person's teams (1, read once: memberships_of), the two rollup reads,
    the filters' teams and agents and the navigation's firing count: the same however many calls, days
    or agents."""
    client.force_login(support_member)
    with django_assert_num_queries(8):
        assert client.get("/breakdown/", WINDOW).status_code == 200
