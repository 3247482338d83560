"""The OpenAPI schema names every endpoint of SPEC.md, and the docs page works without a CDN."""

from __future__ import annotations

import re

from rest_framework.test import APIClient


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
