"""Sending a task on the local filesystem queue (no CELERY_BROKER_URL) prints no kombu warning: the
queue has no host, and kombu's "No hostname was supplied" on every task sent reached a new user's
terminal from `finops alerts evaluate`. Run as a real process, whose logging is the settings'."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEND = """
import django
django.setup()
from finops.celery import app
app.send_task("finops.alerts.tasks.probe", queue="alerts")
print("sent")
"""


def test_a_task_sent_on_the_local_queue_prints_no_warning(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "FINOPS_DATA_DIR", "FINOPS_TEST_DATABASE"}
    }
    environment |= {"FINOPS_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "finops.settings"}
    sent = subprocess.run(
        [sys.executable, "-c", SEND],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == "sent"
    assert list((tmp_path / "broker" / "queue").iterdir())  # the task is on the queue
    assert "WARNING" not in sent.stderr, sent.stderr
