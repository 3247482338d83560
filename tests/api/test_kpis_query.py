"""GET /api/v1/kpis answers odd but valid windows, and refuses bad ones with a 400, never a 500."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "params",
    [
        {"start": "9999-12-31T00:00:01Z", "end": "9999-12-31T23:00:00Z"},
        {"start": "9999-12-31T12:00:00Z", "end": "9999-12-31T23:59:59Z"},
        {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"},
    ],
)
def test_windows_at_the_ends_of_the_calendar_are_answered(api, params):
    response = api.get("/api/v1/kpis", **params)

    assert response.status_code == 200, response.content
    assert response.json()["calls"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"start": "notadate"},
        {"end": "2026-13-01T00:00:00Z"},
        {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
        {"team": "not a slug"},
        {"agent": "bot"},
    ],
)
def test_bad_parameters_are_a_400_with_the_field_named(api, params):
    response = api.get("/api/v1/kpis", **params)

    assert response.status_code == 400
    assert response.json()["message"] == "Validation error"


@pytest.mark.parametrize("path", ["/api/v1/kpis", "/api/v1/quarantine", "/api/v1/audit", "/api/v1/agents"])
def test_a_query_parameter_given_twice_is_a_400_naming_it(api, path):
    # Django would read the last value: a client asking about two teams would get one team's numbers
    response = api.client.get(f"{path}?team=support&team=coding")

    assert response.status_code == 400
    assert response.json() == {
        "message": "give each query parameter once: team came more than once",
        "extra": {},
    }
