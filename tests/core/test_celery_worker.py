"""The Celery wiring, for real: a worker process, a broker, the test database, a task sent by name."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from finops.celery import app
from finops.embedded import database_url
from finops.ledger.models import Call, DailyRollup
from finops.pricing.models import ModelPriceOverride
from finops.pricing.tasks import reprice_unpriced_calls
from ingest.writer import events_ingest
from tests.core.conftest import log_tail, process_group_stop, wait_for

PROVIDER = "acme"
MODEL = "acme-large-2"
WORKER_START_TIMEOUT_SECONDS = 45
TASK_TIMEOUT_SECONDS = 45


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log_path: Path, queue: str) -> None:
        self.process = process
        self.log_path = log_path
        self.queue = queue

    def log(self) -> str:
        return log_tail(self.log_path)


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A `celery -A finops worker` on the test database: committed rows (transactional_db) are what it sees.

    Broker: CELERY_BROKER_URL if set, else a filesystem queue in tmp_path. On a shared broker the worker
    consumes a queue of its own, so no other worker on that broker takes this test's task.
    """
    data_dir = tmp_path / "data"
    broker_url = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
    queue = "pricing" if broker_url == "filesystem://" else f"pricing-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "FINOPS_DATA_DIR": str(data_dir),  # settings put the filesystem queue under it
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
    }
    # the test sends through its own app: point it at the same broker as the worker
    saved_conf = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}
    app.close()
    # the app's producer pool outlives close() and holds the broker (folder) it was made for: a second
    # test with a worker would send its task to the first one's folder
    app.amqp._producer_pool = None
    app.conf.broker_url = broker_url
    if broker_url == "filesystem://":
        broker_dir = data_dir / "broker"
        for sub in ("queue", "processed", "control"):
            (broker_dir / sub).mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {
            "data_folder_in": str(broker_dir / "queue"),
            "data_folder_out": str(broker_dir / "queue"),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),
            "store_processed": False,
        }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "finops",
                "worker",
                "-Q",
                queue,
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--hostname",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    worker = WorkerProcess(process, log_path, queue)
    try:
        wait_for(
            lambda: process.poll() is not None or " ready." in log_path.read_text(errors="replace"),
            timeout=WORKER_START_TIMEOUT_SECONDS,
            what="the Celery worker to be ready",
        )
        assert process.poll() is None, f"the worker exited with {process.returncode}:\n{worker.log()}"
        yield worker
    finally:
        process_group_stop(process)
        app.close()
        app.amqp._producer_pool = None
        app.conf.update(saved_conf)
        # ledger_call is partitioned and unmanaged, so the transactional flush does not empty it
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ledger_call WHERE provider = %s AND model = %s", [PROVIDER, MODEL])


@pytest.mark.celery_worker
def test_worker_prices_unpriced_calls_once_an_override_exists(celery_worker_process):
    # given a call of a model no catalog knows, so it is stored unpriced
    tokens = {"uncached_input": 1_234_567, "cache_read": 200_000, "output": 89_012, "reasoning": 10_000}
    result = events_ingest(
        raw_events=[
            {
                "event_id": f"worker-test-{uuid.uuid4()}",
                "timestamp": datetime.now(UTC).isoformat(),
                "team": "worker-test",
                "agent": "pricer",
                "provider": PROVIDER,
                "model": MODEL,
                "usage": tokens,
            }
        ],
        principal=None,
        source="test",
    )
    assert result.accepted == 1, result.as_json()
    call = Call.objects.get(provider=PROVIDER, model=MODEL)
    assert call.cost_usd is None
    rollup = DailyRollup.objects.get(provider=PROVIDER, model=MODEL)
    assert (rollup.cost_usd, rollup.unpriced_calls) == (Decimal(0), 1)

    # when the organisation sets a price and the sweep runs on the worker
    input_rate, cache_read_rate, output_rate = Decimal("3.25"), Decimal("0.325"), Decimal("13.5")
    ModelPriceOverride.objects.create(
        provider=PROVIDER,
        model=MODEL,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=input_rate,
        cache_read_per_mtok=cache_read_rate,
        output_per_mtok=output_rate,  # reasoning is billed at the output rate when not set
    )
    reprice_unpriced_calls.apply_async(queue=celery_worker_process.queue)

    # then the call is priced at exactly the override's rates, and the rollup moved with it
    priced_cost = wait_for(
        lambda: Call.objects.filter(pk=call.pk).values_list("cost_usd", flat=True).first(),
        timeout=TASK_TIMEOUT_SECONDS,
        interval=0.3,
        what=f"the worker to price the call; worker log:\n{celery_worker_process.log()}",
    )
    expected = (
        tokens["uncached_input"] * input_rate
        + tokens["cache_read"] * cache_read_rate
        + (tokens["output"] + tokens["reasoning"]) * output_rate
    ) / Decimal(1_000_000)
    assert priced_cost == expected
    rollup.refresh_from_db()
    assert rollup.cost_usd == expected
    assert rollup.unpriced_calls == 0
    assert rollup.cost_output_usd == tokens["output"] * output_rate / Decimal(1_000_000)
    assert "succeeded" in celery_worker_process.log()
