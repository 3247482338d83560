"""`finops alerts listen` is a webhook receiver: run as a real process on a fresh data folder, it starts
no PostgreSQL and migrates nothing (it needs no database), and prints a signed delivery it receives as
verified. A new user runs it in a third terminal, where FINOPS_DATA_DIR may not be set."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from finops.alerts.signing import webhook_secret_new, webhook_signature

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_listen_starts_no_database_and_verifies_a_signed_delivery(tmp_path):
    data_dir = tmp_path / "fresh"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "FINOPS_DATA_DIR", "FINOPS_TEST_DATABASE"}
    }
    environment["FINOPS_DATA_DIR"] = str(data_dir)
    secret, port = webhook_secret_new(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "finops.cli", "alerts", "listen", "--secret", secret, "--port", str(port)],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert banner.startswith(f"listening on http://127.0.0.1:{port}/"), banner
        body = json.dumps(
            {
                "type": "alert.firing",
                "alert": {"id": 1, "subject": "task:support/run-1"},
                "rule": {"name": "r"},
            }
        ).encode()
        now = int(time.time())
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=body,
            headers={
                "webhook-id": "msg_fresh",
                "webhook-timestamp": str(now),
                "webhook-signature": webhook_signature(
                    secret=secret, message_id="msg_fresh", timestamp=now, body=body
                ),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 — our http URL
            assert response.status == 204
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert "signature verified" in line and "msg_fresh" in line, line
    assert process.returncode == 0, stderr
    assert "preparing the database" not in stderr
    assert not (data_dir / "pg").exists()  # no embedded PostgreSQL was made, let alone started
