"""The OpenAPI schema names every endpoint of SPEC.md, and the docs page works without a CDN."""

from __future__ import annotations

import re

from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from tests.conftest import Api


def test_schema_lists_the_contract_paths(api):
    schema = api.client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"/api/v1/events", "/api/v1/tasks", "/api/v1/kpis"} <= set(schema["paths"])
    kpi_params = {param["name"] for param in schema["paths"]["/api/v1/kpis"]["get"]["parameters"]}
    assert {"start", "end", "team", "agent"} <= kpi_params
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_loads_its_assets_from_our_own_static_files(admin_client):
    page = admin_client.get("/api/v1/docs").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert not [source for source in sources if source.startswith(("http:", "https:", "//"))]
    for source in sources:
        if source.startswith("/static/"):
            assert APIClient().get(source).status_code == 200, source


def _schema(api) -> dict:
    return api.client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def _operations(schema: dict):
    for url, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {url}", operation


def test_every_operation_documents_the_errors_it_can_answer_in_the_one_error_shape(api):
    schema = _schema(api)
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"message", "extra"}
    for label, operation in _operations(schema):
        codes = set(operation["responses"])
        assert {"401", "403"} <= codes, label
        if "requestBody" in operation:
            assert {"400", "415"} <= codes, label
        if label.startswith(("GET", "POST", "PATCH")) and label.split()[1].startswith("/api/"):
            assert {"404"} <= codes, label
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, label


def test_otlp_traces_is_documented_with_both_encodings_and_its_status_answers(api):
    operation = _schema(api)["paths"]["/v1/traces"]["post"]
    request = operation["requestBody"]["content"]
    assert set(request) == {"application/x-protobuf", "application/json"}
    assert request["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OtlpExportTraceServiceRequest"
    }
    assert set(operation["responses"]) == {"200", "400", "401", "403", "413", "415", "429"}
    partial = _schema(api)["components"]["schemas"]["OtlpExportTraceServiceResponse"]["properties"]
    assert "partialSuccess" in partial


def test_paginated_lists_are_documented_as_pages_and_nullable_fields_as_nullable(api):
    schema = _schema(api)
    page_ref = schema["paths"]["/api/v1/statements"]["get"]["responses"]["200"]["content"]["application/json"]
    page = schema["components"]["schemas"][page_ref["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert page["properties"]["next"]["nullable"] is True
    row = schema["components"]["schemas"]["QuarantinedRow"]["properties"]
    assert row["team"]["nullable"] is True
    assert row["replayed_at"]["nullable"] is True


def test_a_url_under_api_that_matches_no_route_answers_json(api):
    response = api.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"message": "Not found.", "extra": {}}


def test_a_value_of_another_json_type_than_the_schema_says_is_a_400_naming_the_field(api):
    response = api.post("/api/v1/quarantine/replay", {"source": 0, "ids": ["1"]})
    assert response.status_code == 400
    assert response.json()["extra"]["fields"] == {
        "source": ["must be a string"],
        "ids": ["must be a whole number"],
    }


def test_a_form_body_is_a_415(api):
    response = api.client.post("/api/v1/quarantine/replay", {"source": "litellm"})
    assert response.status_code == 415


def test_a_page_size_out_of_range_is_a_400_not_the_default(admin_client):
    response = admin_client.get("/api/v1/statements", {"page_size": "0"})
    assert response.status_code == 400
    assert "page_size" in response.json()["extra"]["fields"]


def test_a_throttled_operation_documents_429():
    class Throttled(APIView):
        throttle_classes = [AnonRateThrottle]

        @extend_schema(responses={200: None})
        def get(self, request):
            raise NotImplementedError

    generator = SchemaGenerator(patterns=[path("throttled", Throttled.as_view())])
    responses = generator.get_schema(request=None, public=True)["paths"]["/throttled"]["get"]["responses"]
    assert responses["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_a_body_over_the_size_limit_is_a_413_in_the_error_shape_on_every_operation_taking_one(
    admin_user, settings
):
    """Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE with RequestDataTooBig: it was an HTML 400
    page with no message, a shape the schema does not document. (/v1/traces has its own limit and 413.)
    An org admin's session, since some operations (connectors) take no API token."""
    api = Api()
    api.client.force_login(admin_user)
    operations = [
        (label, operation)
        for label, operation in _operations(_schema(api))
        if "requestBody" in operation and label.startswith("POST /api/") and "{" not in label
    ]
    assert len(operations) >= 10  # events, tasks, litellm, replay, guard check, and the managed lists
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = "[" + " " * 2048 + "]"
    for label, operation in operations:
        assert "413" in operation["responses"], label
        response = api.post(label.split()[1], body)
        assert response.status_code == 413, (label, response.content[:200])
        assert response.json() == {
            "message": "the body is over 1,024 bytes; send it in smaller batches",
            "extra": {},
        }, label
