"""OTLP/JSON fields are read as their proto3 JSON type, as the OpenAPI schema documents them: a value of
another type is a 400 naming the field (json_format alone would read a string where a message belongs
as an empty message, true as 1 in an enum, and drop what is not base64)."""

from __future__ import annotations

import json

import pytest

from finops.accounts.services import api_token_create

SPAN = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat"}


def post_span(client, span: dict):
    secret = api_token_create(name="otel", scopes=["ingest"])[1]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{**SPAN, **span}]}]}]}
    return client.post(
        "/v1/traces", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


@pytest.mark.parametrize(
    ("span", "named"),
    [
        ({"status": "ok"}, "spans[0].status must be an object"),
        ({"kind": True}, "spans[0].kind is true"),
        ({"kind": 2.5}, "spans[0].kind is 2.5"),
        ({"name": 7}, "spans[0].name is 7"),
        ({"attributes": {"key": "a"}}, "spans[0].attributes must be an array"),
        ({"attributes": [{"key": "a", "value": {"bytesValue": "AA!A"}}]}, "attributes[0].value.bytesValue"),
        ({"parentSpanId": "ab cd"}, "spans[0].parentSpanId"),
        (
            {"attributes": [{"key": "a", "value": {"stringValue": "x", "intValue": "1"}}]},
            "holds stringValue and intValue",
        ),
    ],
)
def test_a_field_of_another_json_type_is_a_400_naming_it(client, db, span, named):
    response = post_span(client, span)
    assert response.status_code == 400
    assert named in response.json()["message"]


def test_the_spellings_proto3_json_allows_are_read(client, db):
    response = post_span(
        client,
        {
            "kind": "SPAN_KIND_CLIENT",
            "startTimeUnixNano": "1790000000000000000",
            "endTimeUnixNano": 1790000000850000000,
            "droppedAttributesCount": "0",
            "status": None,
            "attributes": [
                {"key": "a", "value": {"bytesValue": "AAE"}},
                {"key": "b", "value": {"doubleValue": "NaN"}},
            ],
        },
    )
    assert response.status_code == 200
    assert response.json() == {}
