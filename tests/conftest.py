"""Shared fixtures. Every test talks to a real PostgreSQL (CI's server, or the embedded one)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from rest_framework.test import APIClient

from finops.accounts.services import api_token_create
from tests.factories import TeamFactory


class Api:
    """An API client holding a bearer token, with JSON helpers."""

    def __init__(self, secret: str | None = None) -> None:
        self.client = APIClient()
        if secret:
            self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def post(self, path: str, body, content_type: str = "application/json"):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.client.post(path, data, content_type=content_type)

    def get(self, path: str, **params):
        return self.client.get(path, params)


@pytest.fixture
def make_api(db):
    """make_api(scopes=["ingest", "read"], team=None) -> Api with a fresh token."""

    def make(scopes=("ingest", "read"), team=None) -> Api:
        _, secret = api_token_create(name="test", scopes=list(scopes), team=team)
        return Api(secret)

    return make


@pytest.fixture
def api(make_api) -> Api:
    """An org-wide token with ingest and read scopes."""
    return make_api()


@pytest.fixture
def team(db):
    return TeamFactory(slug="support")


@pytest.fixture(scope="session")
def stray_sessions_ended_at_exit(django_db_setup, django_db_blocker):
    """At the end of the run, just before the test database is dropped, end its other sessions.

    Django keeps a connection per context (asgiref Local), and Playwright's sync API runs tests in a
    greenlet of its own: the connection opened there is out of reach of Django's teardown, left idle, and
    would keep the test database from being dropped. Ending it earlier (at a module's end) broke the next
    browser module, whose greenlet found that connection terminated."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
