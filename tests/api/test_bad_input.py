"""Input that used to be a 500 or lose a batch (issue 7, B.4–B.9): non-object events, deep JSON, rejected
rows keeping their team, team names that are not slugs, browsers and logged-in sessions."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from finops.accounts.models import OrgRole, Team
from finops.ledger.models import Call
from ingest.models import QuarantinedRow
from tests.factories import TeamFactory, UserFactory
from tests.imports.conftest import canonical_event as event
from tests.imports.conftest import litellm_payload

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def nested(depth: int, leaf=1):
    """A JSON value `depth` levels deep: {"a": {"a": … leaf}} (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def ndjson(*lines) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"


# --- B.4: null and other non-objects are rejected rows, the events around them kept ---------------


@pytest.mark.parametrize(
    ("value", "said"),
    [(None, "null"), (5, "a number"), ("text", "a string"), ([1], "an array"), (True, "true or false")],
)
def test_a_non_object_in_a_json_array_is_a_rejected_row_and_the_others_are_kept(api, value, said):
    response = api.post("/api/v1/events", [event("before"), value, event("after")])

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert body["rejected"] == [
        {"index": 1, "event_id": None, "errors": {"non_field_errors": [f"{said}, not an event object"]}}
    ]
    assert sorted(Call.objects.values_list("event_id", flat=True)) == ["after", "before"]
    row = QuarantinedRow.objects.get(source="api:events")
    assert (row.position, row.payload) == ("1", value)


def test_a_null_ndjson_line_is_a_rejected_row_naming_its_line(api):
    response = api.post(
        "/api/v1/events", ndjson(event("one"), "null", "", event("two")), "application/x-ndjson"
    )

    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"][0]["errors"] == {"non_field_errors": ["null, not an event object"]}
    assert QuarantinedRow.objects.get(source="api:events").position == "line 2"


def test_a_null_litellm_log_in_an_array_and_in_ndjson_is_a_rejected_row(api):
    TeamFactory(slug="support")
    array = api.post("/api/v1/litellm", [litellm_payload("l-1"), None, litellm_payload("l-2")]).json()
    lines = api.post(
        "/api/v1/litellm", ndjson(litellm_payload("l-3"), "null", 7), "application/x-ndjson"
    ).json()

    assert (array["accepted"], [row["index"] for row in array["rejected"]]) == (2, [1])
    assert array["rejected"][0]["errors"] == {"non_field_errors": ["null, not a LiteLLM log object"]}
    assert (lines["accepted"], [row["index"] for row in lines["rejected"]]) == (1, [1, 2])
    assert lines["rejected"][1]["errors"] == {"non_field_errors": ["a number, not a LiteLLM log object"]}
    assert QuarantinedRow.objects.filter(source="litellm").count() == 3


# --- B.5: deep JSON is a 400 or a rejected row, never a RecursionError --------------------------------


def test_a_body_nested_100000_deep_is_a_400_naming_the_limit(api, make_api):
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/events", "/api/v1/tasks", "/api/v1/litellm", "/api/v1/quarantine/replay"):
        response = api.post(path, deep)
        assert response.status_code == 400, path
        assert "nested" in response.json()["message"] + json.dumps(response.json()["extra"]), path
    one_object = api.post("/api/v1/events", nested_text(100_000))
    assert one_object.status_code == 400


def test_tags_nested_past_the_limit_are_a_rejected_row_naming_the_field(api):
    response = api.post(
        "/api/v1/events",
        [event("shallow", tags=nested(64)), event("deep", tags=nested(65)), event("ok")],
    )

    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {
            "index": 1,
            "event_id": "deep",
            "errors": {"tags": ["nested 65 levels deep; JSON values may nest at most 64 levels"]},
        }
    ]
    assert QuarantinedRow.objects.get(event_id="deep").errors == body["rejected"][0]["errors"]


def test_an_event_nested_1000_and_100000_deep_in_ndjson_is_a_rejected_row(api):
    tags_1000 = '{"event_id": "t", "timestamp": "2026-11-02T10:15:00Z", "tags": ' + nested_text(1000) + "}"
    response = api.post(
        "/api/v1/events",
        ndjson(event("one"), tags_1000, nested_text(100_000), event("two")),
        "application/x-ndjson",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [row["index"] for row in body["rejected"]] == [1, 2]
    for row in body["rejected"]:
        assert "at most 64 levels" in row["errors"]["non_field_errors"][0]
    assert QuarantinedRow.objects.filter(source="api:events").count() == 2


def test_tags_1000_deep_in_a_json_array_are_a_400_or_a_rejected_row(api):
    body = '[{"event_id": "t", "tags": ' + nested_text(1000) + "}, " + json.dumps(event("ok")) + "]"
    response = api.post("/api/v1/events", body)

    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert response.json()["accepted"] == 1


def test_deep_otlp_json_is_a_400(db):
    from finops.accounts.services import api_token_create

    secret = api_token_create(name="otel", scopes=["ingest"])[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for body in ('{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}", nested_text(1000)):
        response = client.post("/v1/traces", body, content_type="application/json")
        assert response.status_code == 400
        assert "nested" in response.json()["message"]


def test_a_quarantined_row_holding_deep_json_is_replayed_as_still_rejected(api):
    with connection.cursor() as cursor:  # as a row stored before depth was checked would hold it
        cursor.execute(
            "INSERT INTO ingest_quarantinedrow (source, position, event_id, payload, errors, created_at, adapter)"
            " VALUES ('old', '1', '', %s::jsonb, '{}'::jsonb, now(), 'events') RETURNING id",
            [nested_text(2000)],
        )
        row_id = cursor.fetchone()[0]

    listed = api.get("/api/v1/quarantine", source="old")
    result = api.post("/api/v1/quarantine/replay", {"ids": [row_id]})

    assert listed.status_code == 200
    assert result.json() == {"rows": 1, "accepted": 0, "duplicates": 0, "still_rejected": 1}
    assert "at most 64 levels" in QuarantinedRow.objects.get(pk=row_id).errors["non_field_errors"][0]


# --- B.6: text PostgreSQL cannot store rejects its event only, in a JSON array as on an NDJSON line -----


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff"])
def test_a_lone_surrogate_in_a_json_array_of_events_rejects_that_event_only(api, escape):
    # msgspec, which splits the array, refuses a lone surrogate escape: the whole batch was a 400
    surrogate = json.dumps(event("surrogate"))[:-1] + ', "tags": {"note": "' + escape + '"}}'
    body = f"[{json.dumps(event('before'))}, {surrogate}, {json.dumps(event('after'))}]"

    response = api.post("/api/v1/events", body)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"]) == (2, 0)
    assert [(row["index"], row["event_id"], list(row["errors"])) for row in answer["rejected"]] == [
        (1, "surrogate", ["tags"])
    ]
    assert "lone UTF-16 surrogate" in answer["rejected"][0]["errors"]["tags"][0]
    assert sorted(Call.objects.values_list("event_id", flat=True)) == ["after", "before"]
    assert QuarantinedRow.objects.get(source="api:events").event_id == "surrogate"


def test_one_event_object_with_a_lone_surrogate_is_a_rejected_row_not_a_400(api):
    body = json.dumps(event("alone", agent="AGENT")).replace('"AGENT"', '"a\\ud800"')

    response = api.post("/api/v1/events", body)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["accepted"] == 0
    assert [(row["event_id"], list(row["errors"])) for row in answer["rejected"]] == [("alone", ["agent"])]


def test_nan_in_a_json_array_of_events_rejects_that_event_only(api):
    body = f"[{json.dumps(event('kept'))}, " + json.dumps(event("nan"))[:-1] + ', "latency_ms": NaN}]'

    answer = api.post("/api/v1/events", body).json()

    assert answer["accepted"] == 1
    assert [row["event_id"] for row in answer["rejected"]] == ["nan"]
    assert list(Call.objects.values_list("event_id", flat=True)) == ["kept"]


def test_a_json_array_neither_parser_reads_is_still_a_400_naming_the_fault(api):
    response = api.post("/api/v1/events", f'[{json.dumps(event("a"))}, {{"event_id": ]')

    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not JSON (JSON is malformed")
    assert not Call.objects.exists()


# --- B.7: a rejected event keeps its team, so a team-bound token sees and replays it ------------------


def test_a_team_bound_token_sees_and_replays_its_own_rejected_rows(make_api):
    support = TeamFactory(slug="support")
    TeamFactory(slug="billing")
    token = make_api(scopes=["ingest", "read"], team=support)
    response = token.post(
        "/api/v1/events",
        [event("late", timestamp="yesterday"), event("theirs", team="billing", timestamp="yesterday")],
    )
    assert response.json()["accepted"] == 0

    rows = {row.event_id: row for row in QuarantinedRow.objects.all()}
    assert rows["late"].team_id == support.pk
    assert rows["theirs"].team_id is None  # not a team this token may write
    listed = token.get("/api/v1/quarantine").json()
    assert [row["event_id"] for row in listed["results"]] == ["late"]
    assert listed["results"][0]["team"] == "support"

    rows["late"].payload["timestamp"] = "2026-11-02T10:15:00+00:00"  # the sender's fix
    rows["late"].save()
    replayed = token.post("/api/v1/quarantine/replay", {"ids": [rows["late"].pk, rows["theirs"].pk]})
    assert replayed.json() == {"rows": 1, "accepted": 1, "duplicates": 0, "still_rejected": 0}
    assert Call.objects.get(event_id="late").team_id == support.pk


# --- B.8: team names that are not slugs are rejected, not created -------------------------------------


@pytest.mark.parametrize("name", ["Support Team", "support/eu", "ünïcode", "a.b", " support"])
def test_a_team_name_that_is_not_a_slug_is_rejected_and_not_created(api, name):
    body = api.post("/api/v1/events", [event("bad", team=name), event("good")]).json()

    assert body["accepted"] == 1
    assert body["rejected"][0]["errors"] == {
        "team": [f"{name!r} is not a valid team name: use letters, digits, - and _"]
    }
    assert list(Team.objects.values_list("slug", flat=True)) == ["support"]


def test_an_otlp_span_naming_a_team_that_is_not_a_slug_is_rejected_and_the_team_not_created(db):
    from finops.accounts.services import api_token_create

    secret = api_token_create(name="otel", scopes=["ingest"])[1]
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1790000000000000000",
        "endTimeUnixNano": "1790000000850000000",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "400"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "120"}},
        ],
    }
    resource = {
        "attributes": [
            {"key": "finops.team", "value": {"stringValue": "Support Team"}},
            {"key": "service.name", "value": {"stringValue": "triage"}},
        ]
    }
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}

    response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").post(
        "/v1/traces", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "not a valid team name" in response.json()["partialSuccess"]["errorMessage"]
    assert not Team.objects.exists()
    assert QuarantinedRow.objects.get().errors == {
        "team": ["'Support Team' is not a valid team name: use letters, digits, - and _"]
    }


# --- B.9: browsers get a 405, logged-in sessions may post ------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/litellm"])
def test_a_browser_getting_an_ingest_endpoint_gets_a_405(api, path):
    response = api.client.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 405


def test_a_logged_in_session_with_its_csrf_token_may_post_events_as_json_and_ndjson(db):
    TeamFactory(slug="support")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(UserFactory(org_role=OrgRole.ADMIN))
    client.get("/")  # any page sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value

    as_json = client.post(
        "/api/v1/events", json.dumps([event("s-1")]), content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    as_ndjson = client.post(
        "/api/v1/events", ndjson(event("s-2")), content_type="application/x-ndjson", HTTP_X_CSRFTOKEN=csrf
    )
    without_token = client.post("/api/v1/events", json.dumps([event("s-3")]), content_type="application/json")

    assert (as_json.status_code, as_json.json()["accepted"]) == (200, 1)
    assert (as_ndjson.status_code, as_ndjson.json()["accepted"]) == (200, 1)
    assert without_token.status_code == 403
    assert sorted(Call.objects.values_list("event_id", flat=True)) == ["s-1", "s-2"]


def test_an_unknown_usage_key_holding_a_nul_and_a_surrogate_is_named_escaped(api):
    # the JSON fallback (a lone surrogate elsewhere in the batch) reads keys msgspec would refuse: the
    # error must still be text the schema allows (no NUL) and PostgreSQL can store in quarantine
    sent = event("odd-key")
    sent["usage"] = {"uncached_input": 10, "bad\u0000key": 1}
    body = "[" + json.dumps(sent)[:-1] + ', "tags": {"note": "\\ud800"}}]'

    response = api.post("/api/v1/events", body)

    assert response.status_code == 200, response.content
    assert b"\\u0000" not in response.content
    (rejected,) = response.json()["rejected"]
    assert rejected["errors"]["usage"] == [
        "unknown token field(s) 'bad\\x00key'; use uncached_input, cache_read, cache_write_5m, "
        "cache_write_1h, output, reasoning"
    ]
    assert QuarantinedRow.objects.get(source="api:events").errors["usage"] == rejected["errors"]["usage"]
