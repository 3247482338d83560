"""Credentials at rest, the hourly sweep that queues due pulls, and its entry in the one schedule file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from finops.scheduled import BEAT_SCHEDULE
from ingest.connectors import tasks
from ingest.connectors.credentials import CredentialsUnreadable, credentials_decrypt, credentials_encrypt
from ingest.connectors.models import Connector, ConnectorRun, RunStatus
from ingest.connectors.services import connector_create, connector_pull, connector_run_request


def test_credentials_round_trip_and_the_token_hides_the_key():
    encrypted = credentials_encrypt(credentials={"api_key": "sk-admin-abc123"})
    assert "sk-admin-abc123" not in encrypted
    assert credentials_decrypt(encrypted=encrypted) == {"api_key": "sk-admin-abc123"}


def test_a_changed_secret_key_fails_the_pull_with_the_fix(db):
    connector = connector_create(
        kind="openai_usage", name="usage", credentials={"api_key": "sk-admin-abc123"}
    )

    with override_settings(SECRET_KEY="another-secret-key-entirely"):
        with pytest.raises(CredentialsUnreadable):
            credentials_decrypt(encrypted=connector.credentials_encrypted)
        run = connector_pull(connector_id=connector.pk)

    assert run.status == RunStatus.FAILED
    assert "enter the admin key again in the connector settings" in run.error


def test_the_encryption_key_setting_wins_over_secret_key(monkeypatch):
    encrypted = credentials_encrypt(credentials={"api_key": "k"})
    monkeypatch.setenv("FINOPS_ENCRYPTION_KEY", "a-dedicated-encryption-key")
    with pytest.raises(CredentialsUnreadable):
        credentials_decrypt(encrypted=encrypted)


@pytest.fixture
def queued_pulls(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(tasks.pull_connector, "apply_async", lambda args, queue: sent.append(args[0]))
    return sent


def test_the_sweep_queues_enabled_connectors_that_are_due(
    db, queued_pulls, django_capture_on_commit_callbacks
):
    def make(name: str, **fields) -> Connector:
        connector = connector_create(kind="openai_usage", name=name, credentials={"api_key": "k"})
        Connector.objects.filter(pk=connector.pk).update(**fields)
        return connector

    now = timezone.now()
    never_pulled = make("never pulled")
    pulled_long_ago = make("pulled long ago", last_run_at=now - timedelta(hours=2))
    make("pulled just now", last_run_at=now - timedelta(minutes=5))
    make("disabled", enabled=False)
    already_queued = make("already queued")
    ConnectorRun.objects.create(connector=already_queued, status=RunStatus.QUEUED)

    with django_capture_on_commit_callbacks(execute=True):
        queued = tasks.pull_due_connectors()

    assert queued == 2
    assert sorted(queued_pulls) == sorted([never_pulled.pk, pulled_long_ago.pk])


def test_a_broker_that_is_down_fails_the_run_instead_of_the_request(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(tasks.pull_connector, "apply_async", broker_down)
    connector = connector_create(kind="openai_usage", name="usage", credentials={"api_key": "k"})

    with django_capture_on_commit_callbacks(execute=True):
        run = connector_run_request(connector_id=connector.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "could not be queued" in run.error


def test_the_hourly_sweep_is_in_the_schedule_on_the_ingest_queue():
    entry = BEAT_SCHEDULE["pull-due-connectors"]
    assert entry["task"] == tasks.pull_due_connectors.name
    assert entry["options"] == {"queue": "ingest", "expires": 90 * 60}
    assert entry["schedule"].minute == {23} and len(entry["schedule"].hour) == 24
