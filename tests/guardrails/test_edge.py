"""The guard check and whoami in front of Django's request cycle (finops.api.edge) answer exactly what
Django answers: the same status, headers and body, the same reservations; everything the edge cannot
answer with certainty reaches Django whole (its body too); a revoked token is refused at once.

These call the WSGI applications themselves, the one finops serves (finops.wsgi) and Django's own, as a
server does. They need committed data (the edge manages its connection as a request does)."""

from __future__ import annotations

import io
import json
import os
import sys
from decimal import Decimal

import psycopg
import pytest
from django.core.wsgi import get_wsgi_application
from django.db import connection

from finops.accounts.services import api_token_create, api_token_revoke
from finops.api.edge import edge_application
from finops.guardrails.models import Reservation
from finops.guardrails.services import allowance_create
from tests.factories import AgentFactory, TeamFactory
from tests.guardrails.test_fast_path import BASE, BODIES

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def apps():
    from finops.wsgi import application as served

    return {"edge": served, "django": get_wsgi_application()}


@pytest.fixture
def support(transactional_db):
    team = TeamFactory(slug="support")
    agent = AgentFactory(team=team, name="refund-bot")
    allowance_create(principal=None, team=team, agent=agent, window="day", limit_usd="100")
    return team


def call(app, method: str, path: str, *, body: bytes = b"", secret: str | None = None, **extra):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": extra.pop("query", ""),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": extra.pop("host", "127.0.0.1:8000"),
        "CONTENT_TYPE": extra.pop("content_type", "application/json"),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": extra.pop("scheme", "http"),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **extra,
    }
    if secret is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, headers

    chunks = app(environ, start_response)
    content = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return int(started["status"][:3]), dict(started["headers"]), content


def comparable(content: bytes):
    try:
        body = json.loads(content)
    except ValueError:
        return content
    if isinstance(body, dict) and body.get("reservation_id"):
        body["reservation_id"] = "<uuid>"
    return body


def encoded(body) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def test_every_guard_check_body_gets_djangos_answer_headers_and_reservations_included(apps, support):
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    for name, body, content_type, _ in BODIES:
        answers, reserved = {}, {}
        for which in ("django", "edge"):
            Reservation.objects.all().delete()  # each starts where the other did
            answers[which] = call(
                apps[which], "POST", "/api/v1/guard/check", body=encoded(body), secret=secret,
                content_type=content_type,
            )  # fmt: skip
            reserved[which] = Reservation.objects.count()
        (status, headers, content), (edge_status, edge_headers, edge_content) = (
            answers["django"],
            answers["edge"],
        )
        assert edge_status == status, name
        assert edge_headers == headers, name
        assert comparable(edge_content) == comparable(content), name
        assert reserved["edge"] == reserved["django"], name


def test_whoami_gets_djangos_answer(apps, support):
    _, secret = api_token_create(name="agent", scopes=["read"], team=support)
    django_answer = call(apps["django"], "GET", "/api/v1/whoami", secret=secret)
    assert django_answer[0] == 200
    assert call(apps["edge"], "GET", "/api/v1/whoami", secret=secret) == django_answer
    # a query string is the view's to judge
    with_query = call(apps["edge"], "GET", "/api/v1/whoami", secret=secret, query="x=1")
    assert with_query == call(apps["django"], "GET", "/api/v1/whoami", secret=secret, query="x=1")


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("unknown", 401),
        ("revoked", 401),
        ("no ingest scope", 403),
        ("another team's", 404),
    ],
)
def test_a_request_the_edge_cannot_take_is_djangos_and_reserves_nothing(apps, support, case, status):
    token, secret = api_token_create(
        name="agent",
        scopes=["read"] if case == "no ingest scope" else ["ingest"],
        team=TeamFactory(slug="search") if case == "another team's" else None,
    )
    if case == "revoked":
        api_token_revoke(token=token)  # refused from the next request on: the edge caches no token
    secret = {"no token": None, "unknown": "fo_" + "x" * 40}.get(case, secret)
    edge = call(apps["edge"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret)
    assert edge[0] == status
    assert edge == call(apps["django"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret)
    assert Reservation.objects.count() == 0


def test_a_declined_body_reaches_django_whole(apps, support):
    """A brace inside a string is DRF's to read (the edge takes only bodies with one `{`): the edge has
    read the body by then, and Django must read the same bytes, and reserve that estimate."""
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    status, _, content = call(
        apps["edge"], "POST", "/api/v1/guard/check",
        body=encoded({**BASE, "task_id": "run-{1}", "estimated_cost_usd": "2"}), secret=secret,
    )  # fmt: skip
    assert status == 200, content
    assert json.loads(content)["task"]["task_id"] == "run-{1}"
    assert [r.estimated_usd for r in Reservation.objects.all()] == [Decimal(2)]


def test_a_host_not_allowed_and_a_redirect_to_https_are_djangos(apps, support, settings):
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    status, _, _ = call(
        apps["edge"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret, host="evil.example"
    )
    assert status == 400
    settings.SECURE_SSL_REDIRECT = True  # read when the middleware is made: a server started with it
    redirecting = edge_application(get_wsgi_application())
    status, headers, _ = call(redirecting, "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret)
    assert (status, headers["Location"]) == (301, "https://127.0.0.1:8000/api/v1/guard/check")
    assert Reservation.objects.count() == 0


def test_after_the_database_drops_the_connection_the_next_check_is_answered(apps, support):
    """A connection the server ended between two checks: the edge, which has not read the token yet,
    leaves that check to Django, which replaces the connection and answers it for real."""
    _, secret = api_token_create(name="agent", scopes=["ingest"])
    assert call(apps["edge"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret)[0] == 200
    pid = connection.connection.info.backend_pid
    # another connection ends this one, as a database restart would
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    for _ in range(2):
        status, _, content = call(
            apps["edge"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret=secret
        )
        answer = json.loads(content)
        assert status == 200 and answer["reasons"] == [] and answer["allowances"], answer


def test_a_garbage_token_learns_nothing_while_the_database_is_away(apps, support, monkeypatch):
    """With the counters out of reach the edge gives no answer of its own: an unknown token is not told
    "allow" (nor the database's error); the full path answers as it always has."""
    from django.db import DatabaseError

    from finops.guardrails import check

    def unreachable(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(check.psycopg, "Cursor", unreachable)
    status, _, content = call(
        apps["edge"], "POST", "/api/v1/guard/check", body=encoded(BASE), secret="fo_" + "x" * 40
    )
    assert status == 401, content


def test_the_process_environment_a_server_copies_into_requests_is_dropped(monkeypatch):
    """granian puts every variable of the server's environment into each request's environ (so
    DATABASE_URL and SECRET_KEY would be in request.META, and in any error report that lists it):
    what equals the process's own is dropped before Django or the edge read it; what the server and the
    client set is kept, a request header too; a variable named like a header (HTTP_PROXY) is no header."""
    from finops.api.edge import EdgeApplication

    monkeypatch.setenv("FINOPS_TEST_SECRET", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgres://finops:password@db/finops")
    monkeypatch.setenv("HTTP_PROXY", "http://user:password@proxy:3128")
    monkeypatch.setenv("HTTP_X_FORWARDED_FOR", "10.9.9.9")
    monkeypatch.setenv("SERVER_NAME", "from-the-process")  # a CGI name: the server's to set
    seen = {}

    def inner(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    app = EdgeApplication(inner, routes={})
    status, _, _ = call(
        app, "GET", "/", FINOPS_TEST_SECRET="s3cret", DATABASE_URL="postgres://finops:password@db/finops",
        PATH=os.environ["PATH"], HTTP_PROXY="http://user:password@proxy:3128", HTTP_X_FORWARDED_FOR="10.0.0.1",
        FINOPS_CHANGED="by the server",
    )  # fmt: skip
    assert status == 204
    assert not {"FINOPS_TEST_SECRET", "DATABASE_URL", "PATH", "HTTP_PROXY"} & set(seen)
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"  # the client's, not the process's
    assert seen["FINOPS_CHANGED"] == "by the server"  # not the process's: kept
