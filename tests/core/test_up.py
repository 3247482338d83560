"""`finops up` end to end, the first-run path of a laptop: no DATABASE_URL, so it starts its own embedded
PostgreSQL in a fresh data folder, migrates, loads the demo, serves, and stops every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from finops import embedded
from tests.core.conftest import alive, free_port, server_data_dir, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = (
    120  # first start: initdb, migrations, the demo (about 35 s idle, slower on a busy machine)
)
STOP_TIMEOUT_SECONDS = 40


class UpRun:
    """One `finops up` subprocess, its output collected line by line."""

    def __init__(self, *, data_dir: Path, port: int, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "FINOPS_DATA_DIR"}
        }
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "finops.cli",
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *extra_args,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # as from a terminal of its own: our signals reach it only when sent
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        wait_for(
            lambda: self.process.poll() is not None or any(line.startswith("ready:") for line in self.lines),
            timeout=timeout,
            what=f"`finops up` to print ready; output so far:\n{self.output}",
        )
        assert self.process.poll() is None, f"finops up exited with {self.process.returncode}:\n{self.output}"

    def wait_exit(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"finops up did not exit within {timeout} s:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code

    def children(self) -> dict[str, psutil.Process]:
        """web, worker and beat: the direct children, named by their command line."""
        named = {}
        for child in psutil.Process(self.process.pid).children():
            command = " ".join(child.cmdline())
            for name, marker in (("web", " granian "), ("worker", " worker "), ("beat", " beat ")):
                if marker in command:
                    named[name] = child
        return named

    def postgres_pid(self) -> int | None:
        try:
            return int((self.data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def every_started_pid(self) -> set[int]:
        pids = {process.pid for process in psutil.Process(self.process.pid).children(recursive=True)}
        postgres_pid = self.postgres_pid()
        if postgres_pid is not None:
            pids.add(postgres_pid)
            pids |= {process.pid for process in psutil.Process(postgres_pid).children(recursive=True)}
        return pids

    def stray_processes(self) -> list[str]:
        """Anything still running that names this run's data folder or port on its command line."""
        markers = (str(self.data_dir), f":{self.port}", f"finops-up-{self.port}@")
        strays = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            command = " ".join(process.info["cmdline"] or [])
            if process.pid != os.getpid() and any(marker in command for marker in markers):
                strays.append(f"{process.pid}: {command}")
        return strays

    def kill(self) -> None:
        """Teardown safety net: never leave a stack behind, even when an assertion failed mid-test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                for pid in self.every_started_pid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
        embedded.stop_postgres(root=self.data_dir)


@pytest.fixture
def up_data_dir():
    with server_data_dir(prefix="finops-up-") as data_dir:
        yield data_dir


@pytest.fixture
def start_up(up_data_dir):
    runs: list[UpRun] = []

    def start(*extra_args: str) -> UpRun:
        run = UpRun(data_dir=up_data_dir, port=free_port(), extra_args=extra_args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def demo_admin_login() -> tuple[str, str]:
    from ingest.demo import DEMO_LOGINS

    username, password, _ = next(login for login in DEMO_LOGINS if login[0] == "admin")
    return username, password


def log_in_over_http(run: UpRun, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """The login form as a browser posts it, following the redirect; the session keeps the cookies."""
    session = requests.Session()
    assert session.get(f"{run.base_url}/login/", timeout=10).status_code == 200
    response = session.post(
        f"{run.base_url}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
    )
    return session, response


@pytest.mark.celery_worker
def test_first_start_loads_the_demo_serves_the_dashboard_and_stops_everything(start_up):
    # given a fresh data folder and no DATABASE_URL
    started = time.monotonic()
    run = start_up()

    # when it is ready
    run.wait_ready()
    seconds_to_ready = time.monotonic() - started

    # then it started PostgreSQL, loaded the demo once, printed the URL and the logins
    for progress in ("starting PostgreSQL", "migrating…", "loading demo data (first start)…"):
        assert progress in run.output
    assert f"web on {run.base_url}" in run.output
    username, password = demo_admin_login()
    assert f"{username} / {password}" in run.output.split(f"web on {run.base_url}")[1]
    # and the dashboard answers a demo login
    session, response = log_in_over_http(run, username, password)
    assert response.status_code == 200
    overview = session.get(f"{run.base_url}/", timeout=30, allow_redirects=False)
    assert overview.status_code == 200, f"{overview.status_code}: {overview.headers.get('Location')}"
    # over plain HTTP on 127.0.0.1 the cookies must come back: up chose FINOPS_PLAIN_HTTP (no Secure flag)
    assert {cookie.name: cookie.secure for cookie in session.cookies} == {
        "csrftoken": False,
        "sessionid": False,
    }
    # and web, worker and beat are running, with the embedded server
    children = run.children()
    assert set(children) == {"web", "worker", "beat"}, run.output
    assert all(child.is_running() for child in children.values())
    assert run.postgres_pid() is not None and alive(run.postgres_pid())

    # and the web server's access log names the requests (a line is written once its answer has gone out,
    # so the client can have read the answer first)
    web_log_path = run.data_dir / "logs" / "web.log"

    def logged() -> bool:
        web_log = web_log_path.read_text()
        return '"POST /login/ HTTP/1.1" 302' in web_log and '"GET / HTTP/1.1" 200' in web_log

    try:
        wait_for(logged, timeout=10, what="the access log lines")
    except AssertionError as missing:
        raise AssertionError(f"{missing}:\n{web_log_path.read_text()[-3000:]}") from None

    # when it gets SIGTERM
    started_pids = run.every_started_pid()
    stop_started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)

    # then everything it started has exited, the embedded server too, promptly
    assert run.wait_exit() == 0, run.output
    seconds_to_stop = time.monotonic() - stop_started
    assert seconds_to_stop < 15, f"stopped after {seconds_to_stop:.1f} s:\n{run.output}"
    assert "stopped" in run.lines[-1]
    assert [pid for pid in started_pids if alive(pid)] == []
    assert run.stray_processes() == []
    print(f"first start ready in {seconds_to_ready:.1f} s, stopped in {seconds_to_stop:.1f} s")

    # when it starts again on the same folder, the demo is not loaded twice
    again = start_up()
    again.wait_ready(timeout=60)
    assert "loading demo data" not in again.output
    assert f"{username} / {password}" in again.output
    again.process.send_signal(signal.SIGINT)  # as Ctrl-C in its terminal
    assert again.wait_exit() == 0, again.output
    assert again.stray_processes() == []


@pytest.mark.celery_worker
def test_a_child_that_dies_stops_the_stack_with_its_name_and_exit_code(start_up):
    run = start_up("--no-demo")
    run.wait_ready()
    assert "loading demo data" not in run.output
    # and no demo login exists: admin / admin is refused
    _, refused = log_in_over_http(run, *demo_admin_login())
    assert refused.status_code == 200 and "didn't match" in refused.text
    started_pids = run.every_started_pid()

    run.children()["beat"].kill()

    assert run.wait_exit() != 0
    assert f"beat exited with code -{signal.SIGKILL.value}" in run.output
    assert [pid for pid in started_pids if alive(pid)] == []
    assert run.stray_processes() == []


def test_a_taken_port_is_refused_before_anything_starts_and_the_fix_is_named(start_up, up_data_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = UpRun(data_dir=up_data_dir, port=port, extra_args=("--no-demo",))
        code = run.wait_exit(timeout=30)

    assert code != 0
    assert f"port {port} on 127.0.0.1 is taken" in run.output
    assert f"--port {port + 1}" in run.output
    assert not (up_data_dir / "pg").exists()
