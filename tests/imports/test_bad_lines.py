"""File imports keep going past lines that used to stop them for good (issue 7, B.4, B.5, B.8): null and
other non-objects, JSON nested too deep, team names that are not slugs. Each is a rejected row naming
its line; the lines around it are written."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from finops.accounts.models import Team
from finops.accounts.services import api_token_create
from finops.ledger.models import Call
from ingest.imports import file_import
from ingest.models import QuarantinedRow
from tests.imports.conftest import canonical_event, litellm_payload, write_csv, write_jsonl

DEEP_LINE = "[" * 100_000 + "]" * 100_000


def tags_nested(depth: int) -> dict:
    tags = value = {}
    for _ in range(depth - 1):
        value["a"] = value = {}
    return tags


def quarantined(source: str) -> dict[str, QuarantinedRow]:
    return {row.position: row for row in QuarantinedRow.objects.filter(source=source)}


@pytest.fixture
def bad_jsonl(tmp_path):
    return write_jsonl(
        tmp_path / "events.jsonl",
        [
            canonical_event("first"),
            "null",  # line 2
            "5",
            '"text"',
            "[1, 2]",
            DEEP_LINE,  # line 6
            canonical_event("deep-tags", tags=tags_nested(65)),  # line 7
            canonical_event("bad-team", team="Support Team"),  # line 8
            canonical_event("last"),
        ],
    )


@pytest.mark.parametrize("bound_to_the_team", [False, True])
def test_a_jsonl_import_rejects_each_bad_line_and_keeps_the_others(db, bad_jsonl, bound_to_the_team):
    principal = None
    if bound_to_the_team:  # a team-bound token's rows go through the adapter, not straight to the writer
        token, _ = api_token_create(
            name="import", scopes=["ingest"], team=Team.objects.create(slug="support")
        )
        principal = token

    summary = file_import(path=bad_jsonl, principal=principal)

    assert (summary.rows_read, summary.accepted, summary.rejected) == (9, 2, 7)
    assert sorted(Call.objects.values_list("event_id", flat=True)) == ["first", "last"]
    rows = quarantined("file:events.jsonl")
    assert sorted(rows) == [f"line {number}" for number in range(2, 9)]
    assert [rows[f"line {number}"].payload for number in range(2, 6)] == [None, 5, "text", [1, 2]]
    assert rows["line 2"].errors == {"non_field_errors": ["null, not an event object"]}
    assert rows["line 3"].errors == {"non_field_errors": ["a number, not an event object"]}
    assert rows["line 6"].payload == DEEP_LINE  # kept as its text
    assert "at most 64 levels" in str(rows["line 6"].errors)
    assert rows["line 7"].errors == {
        "tags": ["nested 65 levels deep; JSON values may nest at most 64 levels"]
    }
    assert rows["line 7"].team.slug == "support"
    assert rows["line 8"].errors == {
        "team": ["'Support Team' is not a valid team name: use letters, digits, - and _"]
    }
    assert list(Team.objects.values_list("slug", flat=True)) == ["support"]


def test_the_import_command_goes_on_past_a_null_line_and_says_so(db, bad_jsonl):
    out = StringIO()
    call_command("import", str(bad_jsonl), stdout=out)

    printed = out.getvalue()
    assert "accepted             2" in printed
    assert "rejected             7" in printed
    assert "line 2: non_field_errors: null, not an event object" in printed


def test_a_litellm_dump_rejects_null_non_object_and_deep_lines(db, tmp_path):
    Team.objects.create(slug="support")
    path = write_jsonl(
        tmp_path / "litellm.jsonl",
        [litellm_payload("l-1"), "null", "[]", DEEP_LINE, litellm_payload("l-2")],
    )

    summary = file_import(path=path, file_format="litellm")

    assert (summary.accepted, summary.rejected) == (2, 3)
    rows = quarantined("file:litellm.jsonl")
    assert rows["line 2"].errors == {"non_field_errors": ["null, not a LiteLLM log object"]}
    assert rows["line 3"].errors == {"non_field_errors": ["an array, not a LiteLLM log object"]}
    assert "nested more than 128 levels" in rows["line 4"].errors["non_field_errors"][0]


def test_a_csv_cell_of_json_nested_too_deep_is_a_rejected_row(db, tmp_path):
    path = write_csv(
        tmp_path / "calls.csv",
        [
            {**canonical_event("deep"), "tags": "[" * 5000 + "]" * 5000},
            {**canonical_event("ok"), "tags": '{"a": 1}'},
        ],
        columns=["event_id", "timestamp", "team", "agent", "provider", "model", "tags"],
    )

    summary = file_import(path=path)

    assert (summary.accepted, summary.rejected) == (1, 1)
    assert "nested more than 128 levels" in quarantined("file:calls.csv")["line 2"].errors["tags"][0]
