"""What finops relies on from the web server it runs (granian, `supervisor.web_command`), over real HTTP
against a real server on the test database: uploads streamed to disk, streamed CSV exports complete,
WhiteNoise's static files and their headers, HEAD, the client's address, Host and scheme as Django and
the edge (finops.api.edge) read them, kept-alive connections, the access log and a prompt, graceful
stop on SIGTERM."""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import plotly
import pytest
import requests
import yaml
from django.contrib.auth import get_user_model
from django.db import connection

from finops.accounts.models import AuthFailureCounter, ThrottleKind
from finops.accounts.services import api_token_create
from finops.audit.models import AuditAction, AuditEntry
from finops.embedded import database_url
from ingest.models import ImportJob
from tests.core.conftest import REPO_ROOT, process_group_stop, web_server_start

PASSWORD = "web-server-test-password"
UPLOAD_MB = 40
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker (whose memory the upload test reads), two threads, served over plain HTTP as `finops up`
    serves it (cookies without the Secure flag)."""
    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    server = web_server_start(
        database_url=url,
        folder=tmp_path_factory.mktemp("web"),
        workers=1,
        threads=2,
        env={"FINOPS_PLAIN_HTTP": "true"},
    )
    yield server
    process_group_stop(server.process)


def signed_in(web) -> requests.Session:
    user = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    session = requests.Session()
    session.get(f"{web.url}/login/", timeout=10)
    response = session.post(
        f"{web.url}/login/",
        data={
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    return session


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def upload(web, session: requests.Session, path: Path) -> requests.Response:
    with path.open("rb") as file:
        return session.post(
            f"{web.url}/ingest/upload",
            data={"format": "auto", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            files={"file": (path.name, file)},
            timeout=120,
            allow_redirects=False,
        )


def test_a_large_upload_is_streamed_to_disk_not_held_in_memory(web, transactional_db, tmp_path):
    session = signed_in(web)
    line = b'{"event_id": "e", "team": "support", "agent": "bot", "provider": "openai", "model": "gpt-4o"}\n'
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(line * 100)
    large.write_bytes(line * (UPLOAD_MB * 1024 * 1024 // len(line)))
    (worker,) = web.workers()
    assert upload(web, session, small).status_code == 302  # the upload path's code and buffers warmed up
    before = peak_rss_mb(worker.pid)

    response = upload(web, session, large)

    assert response.status_code == 302, response.text[:2000]
    job = ImportJob.objects.get(pk=int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1]))
    stored = Path(job.stored_path)
    assert job.bytes_total == stored.stat().st_size == large.stat().st_size
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(large.read_bytes()).digest()
    # read from the socket in chunks into a temporary file: the worker's peak memory barely moves
    grown = peak_rss_mb(worker.pid) - before
    assert grown < UPLOAD_MB / 4, f"the worker's peak memory grew {grown:.1f} MB for a {UPLOAD_MB} MB upload"
    assert '"POST /ingest/upload HTTP/1.1" 302' in web.log()  # the access log


def test_a_streamed_csv_export_arrives_whole(web, transactional_db):
    session = signed_in(web)
    notes = {str(number): f"{number}:" + "x" * 20_000 for number in range(50)}
    AuditEntry.objects.bulk_create(
        AuditEntry(
            who="test", object_type="note", object_id=key, action=AuditAction.CREATE, after={"note": note}
        )
        for key, note in notes.items()
    )

    response = session.get(f"{web.url}/audit/", params={"export": "audit"}, timeout=30)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "Content-Length" not in response.headers  # streamed: chunked, its length unknown up front
    assert response.headers["Transfer-Encoding"] == "chunked"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["Object id"]: row["Changes"] for row in rows} == {
        key: f"note:  → {note}" for key, note in notes.items()
    }


def test_static_files_are_served_with_their_headers(web):
    content = PLOTLY_JS.read_bytes()
    url = f"{web.url}/static/plotly/plotly.min.js"

    response = requests.get(url, timeout=30)

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["Content-Length"] == str(len(content))
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["Cache-Control"].startswith("max-age=")
    head = requests.head(url, timeout=30)
    assert (head.status_code, head.content, head.headers["Content-Length"]) == (200, b"", str(len(content)))
    again = requests.get(url, headers={"If-None-Match": response.headers["ETag"]}, timeout=30)
    assert (again.status_code, again.content) == (304, b"")
    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert (part.status_code, part.content) == (206, content[100:200])
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(content)}"


def test_head_answers_the_headers_of_get_and_no_body_on_a_kept_alive_connection(web):
    client = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    client.request("GET", "/login/")
    got = client.getresponse()
    body = got.read()
    sock = client.sock

    client.request("HEAD", "/login/")
    head = client.getresponse()

    assert (head.status, head.read()) == (200, b"")
    assert head.getheader("Content-Length") == str(len(body))
    assert head.getheader("Content-Type") == got.getheader("Content-Type")
    # a body sent after the HEAD answer would be read as the next answer's status line
    client.request("GET", "/login/")
    after = client.getresponse()
    assert (after.status, len(after.read())) == (200, len(body))
    assert client.sock is sock  # the same connection all along
    client.close()


def test_the_client_address_reaches_login_throttling(web, transactional_db):
    session = requests.Session()
    session.get(f"{web.url}/login/", timeout=10)

    refused = session.post(
        f"{web.url}/login/",
        data={"username": "nobody", "password": "wrong", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=30,
    )

    assert refused.status_code == 200 and "didn't match" in refused.text
    counted = AuthFailureCounter.objects.get(kind=ThrottleKind.LOGIN_ADDRESS)
    assert (counted.key, counted.failures) == ("127.0.0.1", 1)


def test_a_kept_alive_connection_stays_open_between_requests_and_closes_after_30_s_idle(web):
    request = b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web.port), timeout=60) as sock:
        reader = sock.makefile("rb")

        def answer() -> int:
            status = int(reader.readline().split()[1])
            length = 0
            while (header := reader.readline()) != b"\r\n":
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            reader.read(length)
            return status

        sock.sendall(request)
        assert answer() == 200
        time.sleep(3)
        sock.sendall(request)
        assert answer() == 200
        idle_since = time.monotonic()

        assert reader.read(1) == b""  # the server closed it

    idle = time.monotonic() - idle_since
    assert 28 <= idle <= 35, f"closed after {idle:.1f} s idle"


@pytest.fixture
def own_web(transactional_db, tmp_path):
    servers = []

    def start(**env: str):
        server = web_server_start(
            database_url=database_url(connection.settings_dict),
            folder=tmp_path,
            workers=1,
            threads=2,
            env=env,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        process_group_stop(server.process)


def test_host_and_scheme_reach_django_and_the_edge(own_web):
    server = own_web(SECURE_SSL_REDIRECT="true", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", DEBUG="false")
    secret = api_token_create(name="edge", scopes=["read"])[1]
    token = {"Authorization": f"Bearer {secret}"}
    whoami = f"{server.url}/api/v1/whoami"

    # plain HTTP (wsgi.url_scheme http): redirected to HTTPS on the host the client asked for
    plain = requests.get(whoami, headers=token, timeout=30, allow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{server.port}/api/v1/whoami"
    # HTTPS by the proxy's header: the edge answers, with HSTS
    secure = requests.get(whoami, headers={**token, "X-Forwarded-Proto": "https"}, timeout=30)
    assert secure.status_code == 200
    assert secure.json()["name"] == "edge"
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    # a host not allowed: refused
    other = requests.get(
        whoami, headers={**token, "X-Forwarded-Proto": "https", "Host": "evil.example"}, timeout=30
    )
    assert other.status_code == 400


def test_sigterm_finishes_the_request_in_flight_then_stops_promptly(own_web):
    server = own_web()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    idle.request("GET", "/login/")
    assert idle.getresponse().read()  # a kept-alive connection left open: it must not hold up the stop
    body = b'{"team": "support", "agent": "a", "task_id": "t", "estimated_cost_usd": "0.01"}'
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    in_flight.sendall(
        b"POST /api/v1/guard/check HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer fo_unknown\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
    )
    time.sleep(1)  # the worker is reading the body
    answers = []

    def finish():
        time.sleep(2)
        in_flight.sendall(body[10:])
        answers.append(in_flight.recv(100))

    finisher = threading.Thread(target=finish)
    workers = server.workers()
    finisher.start()
    started = time.monotonic()

    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=30) == 0
    stopped = time.monotonic() - started
    finisher.join()
    in_flight.close()
    assert answers and answers[0].startswith(b"HTTP/1.1 401 "), answers
    assert 2 <= stopped < 6, f"stopped after {stopped:.1f} s"
    assert [worker.pid for worker in workers if worker.is_running()] == []


def test_a_worker_that_dies_ends_the_server_so_finops_up_names_it(own_web):
    # `finops up` restarts nothing silently: the web child's exit stops the stack with web's log tail
    # (granian respawns workers only with --respawn-failed-workers, which deploy/ sets)
    server = own_web()
    (worker,) = server.workers()

    worker.kill()

    assert server.process.wait(timeout=20) == 1
    assert "Unexpected exit from worker-1" in server.log()


def deploy_command(name: str, port: int) -> list[str]:
    """deploy/'s web command, on the given port of 127.0.0.1 with one worker, as the platform would run it."""
    deploy = REPO_ROOT / "deploy"
    if name == "Procfile":
        (line,) = [line for line in (deploy / "Procfile").read_text().splitlines() if line.startswith("web:")]
        shell = line.removeprefix("web:").strip()
    elif name == "Dockerfile":
        (line,) = [
            line for line in (deploy / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
        ]
        sh, dash_c, shell = json.loads(line.removeprefix("CMD "))
        assert (sh, dash_c) == ("sh", "-c") and shell.startswith("exec "), line
        shell = shell.removeprefix("exec ")
    else:
        web = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]["web"]
        # compose interpolates ${VAR:-default} as sh does (no word has a space to quote)
        shell = " ".join(web["command"])
    shell = shell.replace("--host 0.0.0.0 ", "--host 127.0.0.1 ")  # noqa: S104 - what is replaced
    shell = shell.replace("--port ${PORT:-8000} ", f"--port {port} ").replace(
        "--port 8000 ", f"--port {port} "
    )
    assert f"--host 127.0.0.1 --port {port} " in shell, shell
    return ["sh", "-c", f"exec {shell}"]


@pytest.mark.parametrize("name", ["Procfile", "Dockerfile", "compose.yaml"])
def test_the_deploy_web_commands_serve_with_an_access_log_on_stdout_and_stop_on_sigterm(
    name, transactional_db, tmp_path
):
    server = web_server_start(
        database_url=database_url(connection.settings_dict),
        folder=tmp_path,
        env={"WEB_CONCURRENCY": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        command=lambda port: deploy_command(name, port),
    )
    try:
        assert len(server.workers()) == 1  # WEB_CONCURRENCY
        assert requests.get(f"{server.url}/login/", timeout=30).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert '"GET /login/ HTTP/1.1" 200' in server.log()
    finally:
        process_group_stop(server.process)
