"""finops.client against a real server: send events, report outcomes, check before a call (and raise
GuardDenied with the reasons); the module imports no Django."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import finops.client
from finops.accounts.services import api_token_create
from finops.client import FinopsClient, FinopsError, GuardDenied
from finops.guardrails.services import allowance_create
from finops.ledger.models import Task
from tests.factories import TeamFactory


def test_the_client_module_imports_no_django():
    path = Path(finops.client.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('finops_client', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.FinopsClient and not any(name.split('.')[0] == 'django' for name in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], check=True)


def test_send_report_and_check_against_a_real_server(start_server):
    team = TeamFactory(slug="support")
    allowance = allowance_create(
        principal=None, team=team, agent=None, window="day", limit_usd=Decimal("0.01")
    )
    server = start_server(workers=1, threads=2)
    client = FinopsClient(
        server.url, api_token_create(name="client", scopes=["ingest", "read"])[1], timeout=60
    )
    now = datetime.now(UTC)

    decision = client.check("support", "refund-bot", task_id="run-1", estimated_cost_usd=Decimal("0.004"))
    assert decision["decision"] == "allow" and decision["reservation_id"]
    event = {
        "event_id": "run-1:1",
        "timestamp": now.isoformat(),
        "team": "support",
        "agent": "refund-bot",
        "task_id": "run-1",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"uncached_input": 4000},  # $0.01 at $2.50 / MTok: the whole allowance
        "reservation_id": decision["reservation_id"],
    }
    assert client.send_events([event]) == {"accepted": 1, "duplicates": 0, "rejected": []}
    outcome = {"task_id": "run-1", "team": "support", "agent": "refund-bot", "status": "success"}
    client.report_tasks([{**outcome, "started_at": now - timedelta(seconds=5), "ended_at": now}])
    assert Task.objects.get(task_id="run-1").status == "success"

    with pytest.raises(GuardDenied) as denied:
        client.check("support", "refund-bot", task_id="run-2", estimated_cost_usd="0.001", raise_on_deny=True)
    assert denied.value.reasons == [f"allowance {allowance.pk} (support, day): $0.01 of $0.01 used"]
    assert (
        str(denied.value)
        == f"finops guard denied the call: allowance {allowance.pk} (support, day): $0.01 of $0.01 used"
    )

    with pytest.raises(FinopsError) as refused:
        FinopsClient(server.url, "fo_wrong").check("support", "refund-bot")
    assert refused.value.status == 401
