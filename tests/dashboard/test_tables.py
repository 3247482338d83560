"""Every table of a page is a CSV file of the same rows: exact numbers, the page's own filters."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from dashboard.tables import Column, Table, csv_value
from finops.ledger.models import Task
from finops.ledger.tokens import TOKEN_TYPES
from tests.dashboard.conftest import expected_cost

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


def rows_of(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_overview_task_table_downloads_with_exact_costs_and_only_the_persons_teams(
    client, ledger, support_member
):
    client.force_login(support_member)
    page = client.get("/", MARCH).content.decode()
    assert 'href="?start=2025-03-01&amp;end=2025-03-31&amp;export=expensive-tasks"' in page

    response = client.get("/", {**MARCH, "export": "expensive-tasks"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="finops-overview-expensive-tasks-2025-03-01_2025-03-31.csv"'
    )
    head, *rows = rows_of(response)
    assert head == [
        "Task", "Team", "Agent", "Outcome", "Calls", "Cost (priced calls)", "Unpriced calls", "Last call (UTC)",
    ]  # fmt: skip
    # support's two runs, costliest first; billing's b1 is another team's
    assert [(row[0], row[1], row[2], row[3], row[4]) for row in rows] == [
        ("t1", "support", "triage", "success", "2"),
        ("t2", "support", "triage", "failure", "3"),
    ]
    for row in rows:
        assert Decimal(row[5]) == ledger.spend(task_id=row[0])  # to the last digit, not "$0.97"
        assert Decimal(row[5]) == Task.objects.get(task_id=row[0]).cost_usd
        assert datetime.fromisoformat(row[7]) == Task.objects.get(task_id=row[0]).last_call_at


def test_asking_for_a_table_the_page_does_not_have_names_the_ones_it_has(client, ledger, support_member):
    client.force_login(support_member)
    response = client.get("/", {**MARCH, "export": "spend"})
    assert response.status_code == 400
    assert response.content.decode() == (
        "export=spend: this page, with these filters, has no such table "
        "(its tables: cache-hit-by-day, expensive-tasks, spend-by-day, tokens-by-type)\n"
    )


def test_the_agent_page_task_table_downloads_too(client, ledger, support_member):
    client.force_login(support_member)
    triage = ledger.agents["triage"]
    response = client.get(f"/agents/{triage.pk}/", {**MARCH, "export": "expensive-tasks"})
    assert response.status_code == 200
    assert [row[0] for row in rows_of(response)[1:]] == ["t1", "t2"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (Decimal("0.000000000001"), "0.000000000001"),  # never 1E-12
        (Decimal("1234.50"), "1234.50"),
        (42, "42"),
        (0.125, "0.125"),
        (True, "true"),
        (date(2025, 3, 1), "2025-03-01"),
        (datetime(2025, 3, 1, 12, tzinfo=UTC), "2025-03-01T12:00:00+00:00"),
        ("triage", "triage"),
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),  # a name a spreadsheet would run
        ("+1", "'+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3", "'-2+3"),
    ],
)
def test_a_cell_in_the_file_is_exact_and_cannot_run_as_a_formula(value, text):
    assert csv_value(value) == text


def test_a_table_refuses_a_row_of_the_wrong_width_and_a_name_that_is_not_a_slug():
    with pytest.raises(ValueError, match="row 2 has 1 cells, not 2"):
        Table(name="t", caption="", columns=[Column("a"), Column("b")], rows=[[1, 2], [1]])
    with pytest.raises(ValueError, match="table name"):
        Table(name="Spend by day", caption="", columns=[], rows=[])
    with pytest.raises(ValueError, match="kind must be one of"):
        Column("a", "money")


# --- every chart's table, and the tables of the other pages ------------------------------------------


def by_head(response) -> list[dict[str, str]]:
    head, *rows = rows_of(response)
    return [dict(zip(head, row, strict=True)) for row in rows]


def test_the_overview_chart_tables_download_with_exact_values(client, ledger, support_member):
    client.force_login(support_member)
    *days, total = by_head(client.get("/", {**MARCH, "export": "spend-by-day"}))
    assert [row["Day"] for row in days] == ["2025-03-03", "2025-03-04", "2025-03-05"]
    for row in days:
        next_day = (date.fromisoformat(row["Day"]) + timedelta(days=1)).isoformat()
        assert Decimal(row["support"]) == ledger.spend(team="support", start=row["Day"], end=next_day)
        assert Decimal(row["Total"]) == Decimal(row["support"])
    assert (total["Day"], Decimal(total["Total"])) == ("Total", ledger.spend(team="support"))

    input_types = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h")
    support_events = [event for event in ledger.events if event["team"] == "support"]
    for row in by_head(client.get("/", {**MARCH, "export": "cache-hit-by-day"})):
        that_day = [event for event in support_events if event["timestamp"].startswith(row["Day"])]
        read = sum(event["usage"].get("cache_read", 0) for event in that_day)
        inputs = sum(event["usage"].get(kind, 0) for event in that_day for kind in input_types)
        assert (int(row["Cache read tokens"]), int(row["Total input tokens"])) == (read, inputs)
        assert float(row["Cache hit rate"]) == read / inputs

    *types, all_tokens = by_head(client.get("/", {**MARCH, "export": "tokens-by-type"}))
    for row, token_type in zip(types, TOKEN_TYPES, strict=True):
        assert int(row["Tokens"]) == sum(event["usage"].get(token_type, 0) for event in support_events)
    assert int(all_tokens["Tokens"]) == sum(sum(event["usage"].values()) for event in support_events)
    assert all_tokens["Share"] == "1.0"


def test_the_chart_tables_read_as_before_on_the_page(client, ledger, support_member):
    client.force_login(support_member)
    html = client.get("/", MARCH).content.decode()
    spend = re.search(r'<table id="table-spend-by-day">.*?</table>', html, re.S).group(0)
    # one precision for the whole table: the smallest amount, 0.66, needs four places
    assert '<th scope="row">2025-03-04</th><td>$0.6600</td><td>$0.6600</td>' in spend
    assert 'href="?start=2025-03-01&amp;end=2025-03-31&amp;export=spend-by-day"' in html


def test_the_agent_page_chart_tables_download(client, ledger, support_member):
    client.force_login(support_member)
    triage = ledger.agents["triage"]
    rows = by_head(client.get(f"/agents/{triage.pk}/", {**MARCH, "export": "cost-per-success"}))
    assert [(row["Day"], row["Runs"], row["Successful"]) for row in rows] == [
        ("2025-03-03", "1", "1"),
        ("2025-03-04", "1", "0"),
    ]
    assert Decimal(rows[0]["Cost"]) == Decimal(rows[0]["$ per successful task"]) == ledger.spend(task_id="t1")
    assert Decimal(rows[1]["Cost"]) == ledger.spend(task_id="t2") and rows[1]["$ per successful task"] == ""
    steps = by_head(client.get(f"/agents/{triage.pk}/", {**MARCH, "export": "steps-per-run"}))
    assert [(row["Steps"], row["Runs"]) for row in steps] == [("2", "1"), ("3", "1")]


def test_the_task_trace_tables_download(client, ledger, support_member):
    client.force_login(support_member)
    task = Task.objects.get(task_id="t2")
    steps = by_head(client.get(f"/tasks/{task.pk}/", {"export": "steps"}))
    costs = [
        expected_cost(event["model"], event["usage"]) for event in ledger.events if event["task_id"] == "t2"
    ]
    assert [Decimal(row["Cost"]) for row in steps] == costs
    assert [Decimal(row["So far"]) for row in steps] == [sum(costs[: n + 1], Decimal(0)) for n in range(3)]
    assert [int(row["uncached input"]) for row in steps] == [200_000] * 3
    cost = by_head(client.get(f"/tasks/{task.pk}/", {"export": "trace-cost"}))
    assert [Decimal(row["Cost"]) for row in cost] == costs
    context = by_head(client.get(f"/tasks/{task.pk}/", {"export": "trace-context"}))
    assert [int(row["So far"]) for row in context] == [200_000, 400_000, 600_000]
