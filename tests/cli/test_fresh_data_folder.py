"""Every `finops` command works on a fresh data folder (no DATABASE_URL, `finops up` never run): the
command starts the embedded PostgreSQL and migrates it on first use. Importing the settings starts
nothing.

The commands run as real processes, one after another on one fresh folder (the first two at once, as two
terminals would), whose server is stopped at the end. A DATABASE_URL's schema is its operator's: a
command names the missing migrations instead of applying them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
import psycopg
import pytest
from django.core.management import get_commands
from django.db import connection

from finops import embedded
from finops.embedded import database_url
from tests.core.conftest import server_data_dir
from tests.pricing.published import published_cost

with warnings.catch_warnings():  # bpe-openai reads its data with a deprecated importlib call on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import bpe_openai

REPO_ROOT = Path(__file__).resolve().parents[2]
OWN_PACKAGES = ("finops", "ingest", "dashboard")
# `finops up` starts its own server on a fresh folder: tests/core/test_up.py
TESTED_ELSEWHERE = {"up"}
PRICE_TOKENS = {"uncached_input": 1200, "cache_read": 38000, "output": 310}
PROMPT = "Summarise the ticket below in two sentences.\n" * 20
IMPORT_TEAM, IMPORT_AGENT = "platform", "triage-bot"
MIGRATING = "finops: preparing the database"


def fresh_environment(data_dir: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "FINOPS_DATA_DIR", "FINOPS_TEST_DATABASE"}
    }
    return {**environment, "FINOPS_DATA_DIR": str(data_dir)}


def finops(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "finops.cli", *args],
        cwd=REPO_ROOT,
        env=fresh_environment(data_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def import_file(path: Path) -> None:
    moment = datetime.now(UTC) - timedelta(hours=1)
    lines = [
        {
            "event_id": f"fresh-{number}",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "team": IMPORT_TEAM,
            "agent": IMPORT_AGENT,
            "task_id": "run-1",
            "step": number + 1,
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"uncached_input": 1000, "output": 100},
        }
        for number in range(3)
    ]
    path.write_text("\n".join([*map(json.dumps, lines), '{"event_id": "no-usage"}']) + "\n")


@pytest.fixture(scope="module")
def fresh():
    """The commands' runs on one fresh data folder, by command name; its server stopped afterwards."""
    with server_data_dir(prefix="finops-fresh-") as data_dir:
        yield data_dir, fresh_folder_runs(data_dir)


def fresh_folder_runs(data_dir: Path) -> dict[str, subprocess.CompletedProcess]:
    folder = data_dir.parent
    prompt, events = folder / "prompt.txt", folder / "events.jsonl"
    prompt.write_text(PROMPT)
    import_file(events)
    price_args = ["--provider", "anthropic", "--model", "claude-sonnet-4-5", "--json"]
    for token_type, count in PRICE_TOKENS.items():
        price_args += [f"--{token_type.replace('_', '-')}", str(count)]
    runs: dict[str, subprocess.CompletedProcess] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # two first commands at once: one migrates
        price = pool.submit(finops, data_dir, "price", *price_args)
        tokens = pool.submit(finops, data_dir, "tokens", "--model", "gpt-4o", str(prompt))
        runs["price"], runs["tokens"] = price.result(), tokens.result()
    runs["import"] = finops(data_dir, "import", str(events), "--no-progress")
    runs["token"] = finops(
        data_dir, "token", "create", "--name", "ci", "--scope", "ingest", "--team", IMPORT_TEAM
    )
    runs["gate"] = finops(data_dir, "gate", "--agent", IMPORT_AGENT, "--budget-per-task", "0.30")
    runs["demo"] = finops(data_dir, "demo", "--days", "4")
    runs["alerts"] = finops(data_dir, "alerts", "evaluate")
    runs["reprice"] = finops(data_dir, "reprice")
    return runs


def fresh_query(data_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(embedded.postgres_url(root=data_dir)) as connection:
        return connection.execute(sql, params).fetchall()


def test_every_command_of_finops_runs_here_on_a_fresh_folder(fresh):
    _, runs = fresh
    own = {name for name, app in get_commands().items() if app.split(".")[0] in OWN_PACKAGES}

    assert own - TESTED_ELSEWHERE == set(runs)  # a new command needs its run on a fresh folder here


def test_the_first_commands_start_the_server_and_one_of_them_migrates(fresh):
    data_dir, runs = fresh

    assert (runs["price"].returncode, runs["tokens"].returncode) == (0, 0), (
        runs["price"].stderr + runs["tokens"].stderr
    )
    said = [run.stderr.count(MIGRATING) for run in (runs["price"], runs["tokens"])]
    assert sorted(said) == [0, 1]
    assert all(MIGRATING not in run.stderr for name, run in runs.items() if name not in {"price", "tokens"})
    assert (data_dir / "pg" / "PG_VERSION").exists()


def test_price(fresh):
    _, runs = fresh

    body = json.loads(runs["price"].stdout)  # stdout is the JSON alone: the migration note went to stderr
    assert Decimal(body["total_usd"]) == published_cost(
        provider="anthropic", model="claude-sonnet-4-5", tokens=PRICE_TOKENS
    )


def test_tokens(fresh):
    _, runs = fresh
    expected = len(bpe_openai.get_encoding("o200k_base").encode_ordinary(PROMPT))

    lines = runs["tokens"].stdout.splitlines()
    assert lines[:2] == [f"tokens: {expected}", "encoding: o200k_base"]
    cost = Decimal(re.search(r"estimated input cost: \$([0-9.]+)", lines[2]).group(1))
    assert cost == Decimal(expected) * Decimal("2.50") / 1_000_000  # gpt-4o input: $2.50/MTok


def test_import(fresh):
    data_dir, runs = fresh

    assert runs["import"].returncode == 0, runs["import"].stderr
    counts = dict(re.findall(r"^  (accepted|duplicates|rejected) +(\d+)$", runs["import"].stdout, re.M))
    assert counts == {"accepted": "3", "duplicates": "0", "rejected": "1"}
    calls = fresh_query(
        data_dir,
        "SELECT count(*), sum(cost_usd) FROM ledger_call JOIN accounts_team ON team_id = accounts_team.id "
        "WHERE slug = %s",
        (IMPORT_TEAM,),
    )
    assert calls == [
        (
            3,
            3
            * published_cost(
                provider="openai", model="gpt-4o", tokens={"uncached_input": 1000, "output": 100}
            ),
        )
    ]


def test_token_create(fresh):
    data_dir, runs = fresh

    assert runs["token"].returncode == 0, runs["token"].stderr
    secret = runs["token"].stdout.splitlines()[-1]
    stored = fresh_query(
        data_dir,
        "SELECT accounts_apitoken.name, scopes, slug FROM accounts_apitoken "
        "JOIN accounts_team ON team_id = accounts_team.id "
        "WHERE digest = %s",
        (hashlib.sha256(secret.encode()).hexdigest(),),
    )
    assert stored == [("ci", ["ingest"], IMPORT_TEAM)]


def test_gate(fresh):
    _, runs = fresh

    assert runs["gate"].returncode == 0, runs["gate"].stderr
    lines = runs["gate"].stdout.splitlines()
    assert lines[0].startswith(f"agent {IMPORT_TEAM}/{IMPORT_AGENT}, tasks ended ")
    assert lines[1:] == [
        "tasks: 0 ended, 0 successful, 0 failed, 0 abandoned, 0 killed; cost of all their calls $0.000000",
        "no successful task ended in the window: nothing to judge",
        "PASS (no data)",
    ]


def test_demo(fresh):
    data_dir, runs = fresh

    assert runs["demo"].returncode == 0, runs["demo"].stderr
    accepted = int(re.search(r"([\d,]+) calls accepted", runs["demo"].stdout).group(1).replace(",", ""))
    [(calls,)] = fresh_query(data_dir, "SELECT count(*) FROM ledger_call")
    assert accepted > 0 and calls == accepted + 3  # the demo's calls beside the imported three


def test_alerts_evaluate(fresh):
    _, runs = fresh

    assert runs["alerts"].returncode == 0, runs["alerts"].stderr
    assert re.match(r"evaluated \d+ rule\(s\) at .* UTC: \d+ breach\(es\)", runs["alerts"].stdout)


def test_importing_the_settings_starts_nothing(tmp_path):
    data_dir = tmp_path / "data"

    done = subprocess.run(
        [sys.executable, "-c", "import finops.settings as s; print(s.DATABASES['default']['HOST'])"],
        cwd=REPO_ROOT,
        env=fresh_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(data_dir.resolve() / "pg")  # where the server's socket will be
    assert not (data_dir / "pg").exists()
    assert not [
        process.info
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] == "postgres" and str(data_dir) in " ".join(process.info["cmdline"] or [])
    ]


@pytest.fixture
def empty_database_url():
    """The URL of an empty database (no table at all) on the test server, dropped afterwards."""
    server = {**connection.settings_dict, "NAME": "postgres"}
    name = f"finops_empty_{os.getpid()}"
    with psycopg.connect(database_url(server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url({**server, "NAME": name})
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_database_url_without_the_schema_is_named_not_migrated(empty_database_url):
    done = subprocess.run(
        [sys.executable, "-m", "finops.cli", "price", "--provider", "openai", "--model", "gpt-4o"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": empty_database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )

    # a server finops does not own is migrated by its operator, with the release: never by a side command
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("finops: the database at DATABASE_URL lacks ")
    assert done.stderr.rstrip().endswith(
        "migration(s) of this version of finops; apply them first: finops migrate"
    )
    with psycopg.connect(empty_database_url) as unchanged:
        assert unchanged.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (
            0,
        )


def test_reprice(fresh):
    _, runs = fresh

    assert runs["reprice"].returncode == 0, runs["reprice"].stderr
    assert "months re-priced:" in runs["reprice"].stdout, runs["reprice"].stdout
