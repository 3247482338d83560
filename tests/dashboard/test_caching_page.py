"""The Caching page: hit rate per day and per prompt version, cache reads against writes in tokens and
dollars, and the miss cost, each worked out here by brute force from the events sent; prompt-version
changes drawn on the time axis; another team's versions never shown."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from finops.ledger.tokens import INPUT_TOKEN_TYPES
from ingest.writer import events_ingest
from tests.dashboard.conftest import RATES, UNPRICED_MODEL, event, expected_cost_by_type

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


def rows_of(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def versioned(event_id, version, **kwargs) -> dict:
    return {**event(event_id, **kwargs), "prompt_version": version}


@pytest.fixture
def versions(ledger):
    """triage's prompt history: v0 in February, v1 from 10 March (cached well), v2 from 12 March (the
    cache collapses); billing's collector has a version of its own."""
    events = [
        versioned("v0-1", "triage@v0", day="2025-02-20", team="support", agent="triage",
                  uncached_input=500_000, cache_read=500_000),
        *(
            versioned(f"v1-{day}", "triage@v1", day=f"2025-03-{day}", team="support", agent="triage",
                      uncached_input=100_000, cache_read=900_000, cache_write_1h=50_000, output=1_000)
            for day in (10, 11)
        ),
        versioned("v2-1", "triage@v2", day="2025-03-12", team="support", agent="triage", model="m2",
                  uncached_input=700_000, cache_read=100_000, cache_write_5m=200_000),
        versioned("c-1", "collect@secret", day="2025-03-10", team="billing", agent="collector",
                  uncached_input=30_000, cache_read=70_000),
    ]  # fmt: skip
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == len(events)
    ledger.events.extend(events)
    return ledger


def support_march(ledger) -> list[dict]:
    return [e for e in ledger.events if e["team"] == "support" and e["timestamp"].startswith("2025-03")]


def input_of(usage: dict) -> int:
    return sum(usage.get(token_type, 0) for token_type in INPUT_TOKEN_TYPES)


def test_reads_writes_and_the_miss_cost_per_day_are_the_events(client, versions, support_member):
    expected: dict[str, dict] = {}
    for e in support_march(versions):
        day = expected.setdefault(
            e["timestamp"][:10],
            {"read": 0, "write": 0, "uncached": 0, "read_usd": Decimal(0), "write_usd": Decimal(0),
             "uncached_usd": Decimal(0), "miss_usd": Decimal(0)},
        )  # fmt: skip
        usage = e["usage"]
        day["read"] += usage.get("cache_read", 0)
        day["write"] += usage.get("cache_write_5m", 0) + usage.get("cache_write_1h", 0)
        day["uncached"] += usage.get("uncached_input", 0)
        if e["model"] == UNPRICED_MODEL:
            continue  # no cost, so no miss cost either
        costs = expected_cost_by_type(e["model"], usage)
        rates = RATES[e["model"]]
        day["read_usd"] += costs["cache_read"]
        day["write_usd"] += costs["cache_write_5m"] + costs["cache_write_1h"]
        day["uncached_usd"] += costs["uncached_input"]
        # the miss cost: uncached input at the input rate less the cache-read rate
        day["miss_usd"] += (
            Decimal(usage.get("uncached_input", 0))
            * (rates["uncached_input"] - rates["cache_read"])
            / 1_000_000
        )
    client.force_login(support_member)

    head, *rows = rows_of(client.get("/caching/", {**MARCH, "export": "reads-writes-by-day"}))

    assert head == [
        "Day (UTC)", "Cache read tokens", "Cache read cost", "Cache write tokens", "Cache write cost",
        "Uncached input tokens", "Uncached input cost", "Miss cost (upper bound)",
    ]  # fmt: skip
    *days, window = rows
    got = {
        row[0]: {
            "read": int(row[1]), "read_usd": Decimal(row[2]), "write": int(row[3]), "write_usd": Decimal(row[4]),
            "uncached": int(row[5]), "uncached_usd": Decimal(row[6]), "miss_usd": Decimal(row[7]),
        }
        for row in days
    }  # fmt: skip
    assert got == expected
    assert window[0] == "Window"
    assert Decimal(window[7]) == sum((day["miss_usd"] for day in expected.values()), Decimal(0))
    html = client.get("/caching/", MARCH).content.decode()
    card = html[html.index('id="miss-cost"') :]
    total_miss = sum((day["miss_usd"] for day in expected.values()), Decimal(0))
    assert f"${total_miss:,.2f}" in card[: card.index("</article>")]


def test_the_hit_rate_per_day_and_in_the_window(client, versions, support_member):
    per_day: dict[str, list[int]] = {}
    for e in support_march(versions):
        day = per_day.setdefault(e["timestamp"][:10], [0, 0])
        day[0] += input_of(e["usage"])
        day[1] += e["usage"].get("cache_read", 0)
    client.force_login(support_member)

    head, *rows = rows_of(client.get("/caching/", {**MARCH, "export": "hit-rate-by-day"}))

    *days, window = rows
    assert {row[0]: [int(row[1]), int(row[2])] for row in days} == per_day
    for row in days:
        assert float(row[3]) == pytest.approx(int(row[2]) / int(row[1]))
    all_input = sum(day[0] for day in per_day.values())
    all_read = sum(day[1] for day in per_day.values())
    assert float(window[3]) == pytest.approx(all_read / all_input)
    html = client.get("/caching/", MARCH).content.decode()
    card = html[html.index('id="cache-hit-rate"') : html.index('id="cache-reads"')]
    assert f"{all_read / all_input * 100:.1f}%" in card
    assert "Target: above 75%" in card


def test_each_prompt_version_against_the_one_before_and_only_the_persons_team(
    client, versions, support_member
):
    def rate(version: str) -> float:
        calls = [e for e in versions.events if e.get("prompt_version") == version]
        return sum(e["usage"].get("cache_read", 0) for e in calls) / sum(input_of(e["usage"]) for e in calls)

    client.force_login(support_member)

    head, *rows = rows_of(client.get("/caching/", {**MARCH, "export": "prompt-versions"}))

    # v0 was last called in February: not in March's list, but it is the version before v1
    assert [row[:3] for row in rows] == [
        ["support", "triage", "triage@v1"],
        ["support", "triage", "triage@v2"],
    ]
    v1, v2 = rows
    assert (v1[3], v1[5], v1[7]) == ("2025-03-10T12:00:00+00:00", "2", "triage@v0")
    assert float(v1[6]) == pytest.approx(rate("triage@v1"))
    assert float(v1[8]) == pytest.approx(rate("triage@v0"))
    assert (v2[5], v2[7]) == ("1", "triage@v1")
    assert v2[9] == f"{(rate('triage@v2') - rate('triage@v1')) * 100:.1f}"
    html = client.get("/caching/", MARCH).content.decode()
    assert "collect@secret" not in html
    assert f'<a href="/agents/{versions.agents["triage"].pk}/">triage</a>' in html  # to the agent's page


def test_each_version_is_read_over_the_window_and_the_one_before_over_all_its_calls(
    client, versions, support_member
):
    # v1 called again in April, with another hit rate; the window starts on 11 March, so of v1 only the
    # call of the 11th is in it (its call of the 10th and of April are not)
    april = versioned("v1-april", "triage@v1", day="2025-04-02", team="support", agent="triage",
                      uncached_input=800_000, cache_read=200_000)  # fmt: skip
    assert events_ingest(raw_events=[april], principal=None, source="test").accepted == 1
    versions.events.append(april)
    window = {"start": "2025-03-11", "end": "2025-03-31"}

    def of(version: str, *, first_day: str = "", last_day: str = "9999") -> list[dict]:
        return [
            e
            for e in versions.events
            if e.get("prompt_version") == version and first_day <= e["timestamp"][:10] <= last_day
        ]

    def rate(calls: list[dict]) -> float:
        return sum(e["usage"].get("cache_read", 0) for e in calls) / sum(input_of(e["usage"]) for e in calls)

    client.force_login(support_member)

    head, *rows = rows_of(client.get("/caching/", {**window, "export": "prompt-versions"}))

    assert [row[:3] for row in rows] == [
        ["support", "triage", "triage@v1"],
        ["support", "triage", "triage@v2"],
    ]
    v1, v2 = rows
    v1_in_window = of("triage@v1", first_day=window["start"], last_day=window["end"])
    assert len(v1_in_window) == 1 and len(of("triage@v1")) == 3
    assert (v1[3], v1[4], v1[5]) == ("2025-03-11T12:00:00+00:00", "2025-03-11T12:00:00+00:00", "1")
    assert float(v1[6]) == pytest.approx(rate(v1_in_window))
    assert (v1[7], float(v1[8])) == ("triage@v0", pytest.approx(rate(of("triage@v0"))))
    # v2's version before is v1, over all of v1's calls (April's too), not only the window's
    assert (v2[5], v2[7]) == ("1", "triage@v1")
    assert float(v2[8]) == pytest.approx(rate(of("triage@v1")))
    assert float(v2[8]) != pytest.approx(rate(v1_in_window))
    # only v2 was first called inside the window: v1 replaced v0 on 10 March, before it
    html = client.get("/caching/", window).content.decode()
    figure = json.loads(
        re.search(
            r'<script id="cache-hit-rate-data" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    marks = [shape["x0"] for shape in figure["layout"]["shapes"] if shape["line"].get("dash") == "dot"]
    assert marks == ["2025-03-12T12:00:00"]


def test_version_changes_are_marked_on_the_time_axis(client, versions, finops_user):
    client.force_login(finops_user)
    html = client.get("/caching/", MARCH).content.decode()
    figure = json.loads(
        re.search(
            r'<script id="cache-hit-rate-data" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    marks = [shape["x0"] for shape in figure["layout"]["shapes"] if shape["line"].get("dash") == "dot"]
    # each version that replaced an earlier one, first called in March: v1 (after v0) and v2; not
    # collector's first and only version, which changed nothing
    assert sorted(marks) == ["2025-03-10T12:00:00", "2025-03-12T12:00:00"]
    labels = {annotation["text"] for annotation in figure["layout"]["annotations"]}
    assert {"triage: triage@v1", "triage: triage@v2"} <= labels
    assert "collector: collect@secret" not in labels


def test_another_teams_page_is_a_404_and_an_empty_window_says_so(client, versions, support_member):
    client.force_login(support_member)
    assert client.get("/caching/", {**MARCH, "team": "billing"}).status_code == 404
    html = client.get("/caching/", {"start": "2024-01-01", "end": "2024-01-31"}).content.decode()
    assert 'id="empty-state"' in html
    assert "No input tokens in this window" in html
    response = client.get(
        "/caching/", {"start": "2024-01-01", "end": "2024-01-31", "export": "prompt-versions"}
    )
    assert response.status_code == 400  # an empty window has no tables to download


def test_the_page_reads_rollups_only_in_a_fixed_number_of_queries(client, versions, support_member):
    client.force_login(support_member)

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/caching/", MARCH).status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    before = queries()
    more = [
        versioned(f"more-{index}", f"writer@{index}", day=f"2025-03-{14 + index}", team="support", agent="writer",
                  model="m2" if index % 2 else "m1", uncached_input=1_000, cache_read=3_000)
        for index in range(5)
    ]  # fmt: skip
    events_ingest(raw_events=more, principal=None, source="test")
    after = queries()
    assert len(after) == len(before)  # five more versions and days: not one more query
    assert not [sql for sql in after if "ledger_call" in sql]  # never the calls at request time


def test_many_version_changes_share_their_days_line_and_past_twelve_days_go_unlabelled():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from dashboard.caching import MARKS_LABELLED, _version_marks

    def change(day: int, hour: int, agent: str):
        moment = datetime(2025, 1, 1, hour, tzinfo=UTC) + timedelta(days=day)
        return SimpleNamespace(introduced_at=moment, agent=agent, prompt_version=f"{agent}@{day}")

    same_day = [change(3, hour, f"agent-{hour}") for hour in (9, 7, 8)]  # out of order
    shapes, annotations = _version_marks(SimpleNamespace(changes=[*same_day, change(5, 10, "solo")]))
    assert [shape["x0"] for shape in shapes] == ["2025-01-04T07:00:00", "2025-01-06T10:00:00"]
    assert [annotation["text"] for annotation in annotations] == ["3 prompt versions", "solo: solo@5"]
    assert annotations[0]["hovertext"] == "agent-7: agent-7@3<br>agent-8: agent-8@3<br>agent-9: agent-9@3"

    many = [change(day, 12, f"agent-{day}") for day in range(MARKS_LABELLED + 1)]
    shapes, annotations = _version_marks(SimpleNamespace(changes=many))
    assert len(shapes) == MARKS_LABELLED + 1 and annotations == []
