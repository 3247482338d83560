"""The guard check's short path past DRF (finops.api.fast) answers exactly what the DRF view answers:
the same status, the same JSON, the same reservations, for every body it takes, and it leaves every body
it cannot read with certainty to the view."""

from __future__ import annotations

import json
import re

import pytest
from django.test import RequestFactory

from finops.accounts.services import api_token_create, api_token_revoke
from finops.api import fast
from finops.guardrails.api import GuardCheckView, guard_check_fast
from finops.guardrails.models import Reservation
from finops.guardrails.services import allowance_create
from tests.factories import AgentFactory, TeamFactory

RESERVATION_ID = re.compile(rb'"reservation_id":"[0-9a-f-]{36}"')
BASE = {"team": "support", "agent": "refund-bot"}

# (name, body as sent, content type, whether the short path answers it itself)
BODIES = [
    ("minimal", BASE, "application/json", True),
    ("task and estimates", {**BASE, "task_id": "run-1", "estimated_tokens": 1200, "estimated_cost_usd": "0.25"},
     "application/json", True),
    ("cost as a number", {**BASE, "estimated_cost_usd": 1}, "application/json", False),
    ("the smallest cost", {**BASE, "estimated_cost_usd": "0.000000000001"}, "application/json", True),
    ("the largest cost", {**BASE, "estimated_cost_usd": "9999999999999999.999999999999"}, "application/json", True),
    ("blank task id", {**BASE, "task_id": ""}, "application/json; charset=utf-8", True),
    ("nulls", {**BASE, "task_id": None, "estimated_tokens": None, "estimated_cost_usd": None},
     "application/json", True),
    ("unknown team", {**BASE, "team": "nobody"}, "application/json", False),
    ("cost as a float", {**BASE, "estimated_cost_usd": 0.25}, "application/json", False),
    ("cost with an exponent", {**BASE, "estimated_cost_usd": "1e-3"}, "application/json", False),
    ("negative cost", {**BASE, "estimated_cost_usd": "-1"}, "application/json", False),
    ("too many places", {**BASE, "estimated_cost_usd": "0.0000000000001"}, "application/json", False),
    ("leading zero", {**BASE, "estimated_cost_usd": "00.5"}, "application/json", False),
    ("tokens as text", {**BASE, "estimated_tokens": "12"}, "application/json", False),
    ("tokens as a bool", {**BASE, "estimated_tokens": True}, "application/json", False),
    ("negative tokens", {**BASE, "estimated_tokens": -1}, "application/json", False),
    ("too many tokens", {**BASE, "estimated_tokens": 10**15 + 1}, "application/json", False),
    ("team not a slug", {**BASE, "team": "sup port"}, "application/json", False),
    ("no agent", {"team": "support"}, "application/json", False),
    ("blank agent", {**BASE, "agent": ""}, "application/json", False),
    ("agent to trim", {**BASE, "agent": " refund-bot "}, "application/json", False),
    ("agent with NUL", {**BASE, "agent": "refund\u0000bot"}, "application/json", False),
    ("agent with a lone surrogate", '{"team": "support", "agent": "x\\ud800"}', "application/json", False),
    ("agent too long", {**BASE, "agent": "a" * 129}, "application/json", False),
    ("a key it does not know", {**BASE, "extra": 1}, "application/json", False),
    ("a brace in a string", {**BASE, "task_id": "run-{1}"}, "application/json", False),
    ("nested", {**BASE, "task_id": {"a": 1}}, "application/json", False),
    ("an array", [BASE], "application/json", False),
    ("null", None, "application/json", False),
    ("not JSON", "{team: support", "application/json", False),
    ("form encoded", "team=support&agent=refund-bot", "application/x-www-form-urlencoded", False),
]  # fmt: skip


@pytest.fixture
def support(db):
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="refund-bot")
    allowance_create(principal=None, team=team, agent=agent, window="day", limit_usd="100")
    return team


def request(body, content_type: str, secret: str):
    data = body if isinstance(body, str) else json.dumps(body)
    return RequestFactory().post(
        "/api/v1/guard/check", data, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


def masked(content: bytes) -> bytes:
    return RESERVATION_ID.sub(b'"reservation_id":"<uuid>"', content)


def comparable(response) -> tuple[int, object]:
    response.render() if hasattr(response, "render") else None
    try:
        body = json.loads(response.content)
    except ValueError:
        return response.status_code, response.content
    if isinstance(body, dict) and body.get("reservation_id"):
        body["reservation_id"] = "<uuid>"
    return response.status_code, body


@pytest.mark.parametrize(("name", "body", "content_type", "short"), BODIES, ids=[body[0] for body in BODIES])
def test_the_short_path_answers_as_the_view_does(support, name, body, content_type, short):
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    drf_view = GuardCheckView.as_view()
    short_view = fast.with_fast_path(drf_view, guard_check_fast)

    by_view = drf_view(request(body, content_type, secret))
    reserved_by_view = Reservation.objects.count()
    Reservation.objects.all().delete()  # the second check starts where the first did (no reservation held)
    by_short_path = short_view(request(body, content_type, secret))
    reserved_by_short_path = Reservation.objects.count()

    assert comparable(by_short_path) == comparable(by_view)
    assert reserved_by_short_path == reserved_by_view
    # a DRF Response carries .data; the short path's plain HttpResponse does not
    assert (not hasattr(by_short_path, "data")) is short
    if short:  # the same bytes, but for the reservation's id
        assert masked(by_short_path.content) == masked(by_view.rendered_content)
        assert by_short_path["Content-Type"] == by_view["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("case", "status"), [("no ingest scope", 403), ("revoked", 401), ("unknown", 401), ("malformed", 401)]
)
def test_a_token_the_short_path_cannot_take_gets_the_views_answer(support, case, status):
    token, secret = api_token_create(
        name="agent", scopes=["read"] if case == "no ingest scope" else ["ingest"]
    )
    if case == "revoked":
        api_token_revoke(token=token)
    secret = {"unknown": "fo_" + "x" * 40, "malformed": "two words"}.get(case, secret)
    view = fast.with_fast_path(GuardCheckView.as_view(), guard_check_fast)
    response = view(request(BASE, "application/json", secret))
    response.render()
    assert response.status_code == status
    assert Reservation.objects.count() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
def test_another_method_with_a_json_body_is_the_views_405_and_reserves_nothing(support, method):
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    view = fast.with_fast_path(GuardCheckView.as_view(), guard_check_fast)
    request = RequestFactory().generic(
        method,
        "/api/v1/guard/check",
        json.dumps({**BASE, "estimated_cost_usd": "1"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    response = view(request)
    response.render()
    assert response.status_code == 405
    assert Reservation.objects.count() == 0
