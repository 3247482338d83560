"""POST /api/v1/events: partial acceptance, idempotency, quarantine, formats and auth (SPEC.md)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from finops.ledger.models import Call, DailyRollup, Task
from ingest.models import QuarantinedRow
from tests.factories import TeamFactory
from tests.ledger.reference import reference_cost


def event(event_id: str, **overrides) -> dict:
    body = {
        "event_id": event_id,
        "timestamp": "2026-11-02T10:15:00Z",
        "team": "support",
        "agent": "ticket-triage",
        "task_id": "run-42",
        "step": 3,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": {
            "uncached_input": 1200,
            "cache_read": 38000,
            "cache_write_5m": 0,
            "cache_write_1h": 0,
            "output": 310,
            "reasoning": 0,
        },
        "input_breakdown": {
            "system": 2000,
            "tools": 1500,
            "history": 30000,
            "retrieval": 4000,
            "tool_results": 1500,
            "user": 200,
        },
        "batch": False,
        "latency_ms": 2300,
        "status": "ok",
        "prompt_version": "triage@4f2a9c",
        "max_tokens": 1024,
        "tool_calls": [{"name": "search_kb", "args_hash": "9b1d"}],
        "reported_cost_usd": "0.0171",
        "tags": {"feature": "refunds"},
    }
    body.update(overrides)
    return body


def test_the_spec_example_is_stored_with_every_field_and_priced(api):
    response = api.post("/api/v1/events", [event("run-42:step-3")])

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    call = Call.objects.get(event_id="run-42:step-3")
    assert (call.uncached_input, call.cache_read, call.output) == (1200, 38000, 310)
    assert call.input_breakdown["history"] == 30000
    assert call.tool_calls == [{"name": "search_kb", "args_hash": "9b1d"}]
    assert call.prompt_version == "triage@4f2a9c"
    assert call.reported_cost_usd == Decimal("0.0171")
    assert call.tags == {"feature": "refunds"}
    # 1200 × $3 + 38000 × $0.30 + 310 × $15, per MTok
    assert call.cost_usd == Decimal("0.01965") == reference_cost(event("x"))


def test_good_events_are_kept_when_others_in_the_batch_are_bad(api):
    batch = [
        event("good-1"),
        event("bad-timestamp", timestamp="yesterday"),
        {"event_id": "missing-most"},
        event("bad-tokens", usage={"uncached_input": -5, "outputs": 3}),
        event("float-money", reported_cost_usd=0.1),
        "not an object",
        event("good-2", task_id=None),
    ]
    body = api.post("/api/v1/events", batch).json()

    assert body["accepted"] == 2
    assert body["duplicates"] == 0
    rejected = {row["index"]: row for row in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5]
    assert rejected[1]["event_id"] == "bad-timestamp"
    assert "ISO 8601" in rejected[1]["errors"]["timestamp"][0]
    assert set(rejected[2]["errors"]) == {"timestamp", "team", "agent", "provider", "model", "usage"}
    assert "usage.uncached_input" in rejected[3]["errors"]
    assert "outputs" in rejected[3]["errors"]["usage"][0]
    assert "decimal string" in rejected[4]["errors"]["reported_cost_usd"][0]
    assert rejected[5]["event_id"] is None
    assert set(Call.objects.values_list("event_id", flat=True)) == {"good-1", "good-2"}
    # every rejected row is quarantined with its payload and reason
    quarantined = {row.position: row for row in QuarantinedRow.objects.filter(source="api:events")}
    assert sorted(quarantined) == ["1", "2", "3", "4", "5"]
    assert quarantined["1"].payload["timestamp"] == "yesterday"
    assert quarantined["1"].errors == rejected[1]["errors"]


def test_missing_token_fields_count_as_zero(api):
    api.post("/api/v1/events", [event("sparse", usage={"output": 7})])
    call = Call.objects.get(event_id="sparse")
    assert (call.uncached_input, call.cache_read, call.cache_write_5m, call.cache_write_1h) == (0, 0, 0, 0)
    assert (call.output, call.reasoning) == (7, 0)


def test_sending_an_event_again_changes_nothing(api):
    first = api.post("/api/v1/events", [event("a"), event("b"), event("a")]).json()
    assert first == {"accepted": 2, "duplicates": 1, "rejected": []}
    rollup_before = list(DailyRollup.objects.values())
    task_before = list(Task.objects.values())

    again = api.post("/api/v1/events", [event("b"), event("a", timestamp="2026-11-03T00:00:00Z")]).json()

    assert again == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert Call.objects.count() == 2
    assert list(DailyRollup.objects.values()) == rollup_before
    assert list(Task.objects.values()) == task_before


def test_rollups_and_task_aggregates_count_exactly_the_new_rows(api):
    api.post("/api/v1/events", [event("s1", step=1), event("s2", step=2)])
    api.post("/api/v1/events", [event("s2", step=2), event("s3", step=3, model="acme-x", provider="acme")])

    rollups = DailyRollup.objects.filter(team__slug="support")
    assert sum(rollup.calls for rollup in rollups) == 3
    priced = rollups.get(model="claude-sonnet-4-5")
    assert priced.calls == 2
    assert priced.cost_usd == 2 * reference_cost(event("x"))
    assert priced.cache_read == 2 * 38000
    # per token type costs add up to the total
    by_type = sum(
        getattr(priced, f"cost_{t}_usd")
        for t in ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")
    )
    assert by_type == priced.cost_usd
    unpriced = rollups.get(model="acme-x")
    assert (unpriced.calls, unpriced.unpriced_calls, unpriced.cost_usd) == (1, 1, 0)
    task = Task.objects.get(task_id="run-42")
    assert task.steps == 3
    assert task.unpriced_calls == 1
    assert task.cost_usd == 2 * reference_cost(event("x"))
    assert task.status is None  # no outcome reported yet


def test_ndjson_bodies_and_their_bad_lines(api):
    lines = [json.dumps(event("n1")), "{not json", "", json.dumps(event("n2"))]
    response = api.post("/api/v1/events", "\n".join(lines), content_type="application/x-ndjson")

    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 2
    assert [row["index"] for row in body["rejected"]] == [1]
    assert "not JSON" in body["rejected"][0]["errors"]["non_field_errors"][0]
    quarantined = QuarantinedRow.objects.get()
    assert (quarantined.position, quarantined.payload) == ("line 2", "{not json")


@pytest.mark.parametrize("payload", ["{{nope", "42", '"a string"'])
def test_a_body_that_is_not_a_json_array_is_a_400(api, payload):
    response = api.post("/api/v1/events", payload)
    assert response.status_code == 400
    assert "message" in response.json()


def test_a_team_bound_token_may_only_send_its_own_teams_events(make_api):
    support = TeamFactory(slug="support")
    TeamFactory(slug="coding")
    api = make_api(scopes=["ingest"], team=support)

    body = api.post(
        "/api/v1/events", [event("mine"), event("theirs", team="coding"), event("new-team", team="brand-new")]
    ).json()

    assert body["accepted"] == 1
    errors = {row["event_id"]: row["errors"]["team"][0] for row in body["rejected"]}
    assert errors == {
        "theirs": "this token may only send events for team 'support'",
        "new-team": "this token may only send events for team 'support'",
    }


def test_an_org_wide_token_creates_teams_and_agents_on_first_sight(api):
    api.post("/api/v1/events", [event("first", team="platform", agent="router")])
    call = Call.objects.get(event_id="first")
    assert call.team.slug == "platform"
    assert call.agent.name == "router"


def test_auth_and_scopes(make_api, db):
    from tests.conftest import Api

    assert Api().post("/api/v1/events", [event("anon")]).status_code in (401, 403)
    assert Api("fo_not-a-token").post("/api/v1/events", [event("x")]).status_code == 401
    read_only = make_api(scopes=["read"])
    response = read_only.post("/api/v1/events", [event("x")])
    assert response.status_code == 403
    assert "ingest" in response.json()["message"]
    assert Call.objects.count() == 0


def test_calls_land_in_monthly_partitions(api, django_db_blocker):
    api.post(
        "/api/v1/events",
        [event("oct", timestamp="2026-10-31T23:59:59Z"), event("nov", timestamp="2026-11-01T00:00:00Z")],
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, event_id FROM ledger_call ORDER BY event_id")
        placement = dict((event_id, partition) for partition, event_id in cursor.fetchall())
    assert placement == {"nov": "ledger_call_p2026_11", "oct": "ledger_call_p2026_10"}


def test_an_embedding_call_is_unpriced_and_the_batch_is_kept(api):
    response = api.post(
        "/api/v1/events",
        [
            event("chat"),
            event("embed", provider="openai", model="text-embedding-3-small", usage={"uncached_input": 100}),
        ],
    )

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert Call.objects.get(event_id="embed").cost_usd is None
    assert Call.objects.get(event_id="chat").cost_usd is not None


def test_values_postgres_cannot_store_are_rejected_rows_and_the_batch_is_kept(api):
    # NUL characters and lone surrogates fit neither text nor jsonb; a cost past numeric(28, 12) is
    # too large for the ledger: each would have failed the whole batch's insert
    lone_surrogate = json.dumps(event("surrogate"))[:-1] + ', "tags": {"note": "\\ud800"}}'
    lines = [
        json.dumps(event("nul-\u0000-id")),
        json.dumps(event("nul-in-tags", tags={"feature": "a\u0000b"})),
        lone_surrogate,
        json.dumps(event("huge-cost", reported_cost_usd="1e400")),
        json.dumps(event("rounds-past-the-top", reported_cost_usd="9999999999999999.9999999999995")),
        json.dumps(event("nul-in-usage-key", usage={"output\u0000": 1})),
        json.dumps(event("good")),
        # costs Python reads but PostgreSQL would not: stored as numeric(28, 12) rounds them
        json.dumps(event("tiny-cost", reported_cost_usd="1e-999999999")),
        json.dumps(event("underscored-cost", reported_cost_usd="1_000.5")),
        json.dumps(event("half-up", reported_cost_usd="0.0000000000005")),
    ]
    response = api.post("/api/v1/events", "\n".join(lines), content_type="application/x-ndjson")

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 4
    rejected = {row["index"]: row["errors"] for row in body["rejected"]}
    assert sorted(rejected) == [0, 1, 2, 3, 4, 5]
    assert "NUL" in rejected[0]["event_id"][0]
    assert "NUL" in rejected[1]["tags"][0]
    assert "surrogate" in rejected[2]["tags"][0]
    assert "too large" in rejected[3]["reported_cost_usd"][0]
    assert "too large" in rejected[4]["reported_cost_usd"][0]
    assert "usage" in rejected[5]
    stored = dict(Call.objects.values_list("event_id", "reported_cost_usd"))
    assert stored == {
        "good": Decimal("0.0171"),
        "tiny-cost": Decimal(0),
        "underscored-cost": Decimal("1000.5"),
        "half-up": Decimal("0.000000000001"),
    }
    # kept in quarantine as sent, the characters PostgreSQL cannot hold written as \u escapes
    quarantined = {row.position: row for row in QuarantinedRow.objects.all()}
    assert sorted(quarantined) == ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"]
    assert quarantined["line 1"].event_id == "nul-\\u0000-id"
    assert json.loads(quarantined["line 2"].payload)["tags"] == {"feature": "a\u0000b"}
    assert quarantined["line 4"].payload["reported_cost_usd"] == "1e400"
