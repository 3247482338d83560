"""Every table of a page is a CSV file of the same rows: exact numbers, the page's own filters."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from dashboard.tables import Column, Table, csv_value
from finops.ledger.models import Task

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
