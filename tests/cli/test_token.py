"""`finops token create|list|revoke`: the secret alone is the last line, and it works against the API."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from finops.accounts.models import ApiToken
from tests.cli.conftest import run_command
from tests.conftest import Api
from tests.factories import TeamFactory


def test_create_prints_a_working_token_on_the_last_line(db):
    ran = run_command("token", "create", "--name", "ci-read", "--scope", "read")

    lines = ran.stdout.strip().splitlines()
    secret = lines[-1]
    assert " " not in secret and secret.startswith("fo_")
    assert any("only time" in line for line in lines[:-1])
    token = ApiToken.objects.get(name="ci-read")
    assert token.scopes == ["read"] and token.team is None
    assert Api(secret).get("/api/v1/kpis").status_code == 200
    assert Api(secret + "x").get("/api/v1/kpis").status_code == 401


def test_team_token_with_several_scopes_sees_only_its_team(db):
    TeamFactory(slug="support")
    TeamFactory(slug="coding")

    ran = run_command(
        "token", "create", "--name", "support-ci", "--scope", "ingest", "--scope", "read", "--team", "support"
    )

    api = Api(ran.stdout.strip().splitlines()[-1])
    assert sorted(ApiToken.objects.get(name="support-ci").scopes) == ["ingest", "read"]
    assert api.get("/api/v1/kpis", team="support").status_code == 200
    assert api.get("/api/v1/kpis", team="coding").status_code == 404


def test_unknown_team_is_named_in_the_error(db):
    TeamFactory(slug="support")

    with pytest.raises(CommandError, match="unknown team 'suport'.*support"):
        run_command("token", "create", "--name", "x", "--scope", "read", "--team", "suport")
    assert not ApiToken.objects.exists()


def test_list_shows_prefixes_never_secrets_and_revoke_stops_the_token(db):
    secret = run_command("token", "create", "--name", "ci", "--scope", "read").stdout.strip().splitlines()[-1]
    token = ApiToken.objects.get(name="ci")

    listing = run_command("token", "list").stdout
    assert token.prefix in listing and secret not in listing and token.digest not in listing

    revoked = run_command("token", "revoke", token.prefix)
    assert "Revoked" in revoked.stdout
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert Api(secret).get("/api/v1/kpis").status_code == 401
    assert "already revoked" in run_command("token", "revoke", token.prefix).stdout
    with pytest.raises(CommandError, match="no API token with prefix"):
        run_command("token", "revoke", "fo_nothing")


def test_token_create_as_a_real_process(transactional_db, finops_process):
    TeamFactory(slug="support")

    done = finops_process("token", "create", "--name", "ci", "--scope", "read", "--team", "support")
    missing_team = finops_process("token", "create", "--name", "ci", "--scope", "read", "--team", "nope")

    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert Api(secret).get("/api/v1/kpis", team="support").status_code == 200
    assert missing_team.returncode != 0
    assert "unknown team 'nope'" in missing_team.stderr
