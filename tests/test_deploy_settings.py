"""The production settings in deploy/ pass Django's deployment checklist; DEBUG off means secure cookies
unless plain HTTP is chosen on purpose, as `finops up` does on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
UNUSED_DATABASE_URL = "postgres://unused:unused@127.0.0.1:9/unused"
PRODUCTION_ENV = ROOT / "deploy" / "production.env"
TEMPLATE_DIRS = [
    ROOT / "dashboard" / "templates",
    ROOT / "ingest" / "templates",
    ROOT / "ingest" / "connectors" / "templates",
]
# what these tests set themselves, never inherited from the shell or from other tests (the browser tests
# set DJANGO_ALLOW_ASYNC_UNSAFE, which check --deploy rightly reports)
OWN_VARIABLES = {
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "DEBUG",
    "FINOPS_PLAIN_HTTP",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "FINOPS_CLIENT_ADDRESS_HEADER",
}


def env_file_read(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def process_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in OWN_VARIABLES}
    # reading settings and `check --deploy` connect to no database: an address that answers nothing
    env["DATABASE_URL"] = UNUSED_DATABASE_URL
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["ALLOWED_HOSTS"] = "finops.example.com"
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def settings_in(env: dict[str, str], *names: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name, None) for name in {list(names)!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "finops.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_reports_nothing_with_the_production_settings():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=process_env(**env_file_read(PRODUCTION_ENV))
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_without_the_production_settings_check_deploy_fails():
    """The check is not vacuous: DEBUG on and plain-HTTP cookies are each reported."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=process_env(DEBUG="true"))

    assert result.returncode != 0
    for check in ("security.W018", "security.W012", "security.W016"):  # DEBUG, session and CSRF cookies
        assert check in result.stderr


def test_debug_off_means_secure_cookies_and_hsts_unless_plain_http_is_chosen():
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER")

    assert settings_in(process_env(), *names) == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    local = settings_in(process_env(FINOPS_PLAIN_HTTP="true"), *names)
    assert (local["SESSION_COOKIE_SECURE"], local["CSRF_COOKIE_SECURE"]) == (False, False)
    proxied = settings_in(process_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"), *names)
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_every_page_carries_the_security_headers(client):
    response = client.get("/login/")

    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "camera=()" in response["Permissions-Policy"]
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_hsts_is_sent_over_https_only_and_a_configured_proxy_header_marks_https(settings):
    assert "Strict-Transport-Security" not in Client().get("/login/")
    assert Client().get("/login/", secure=True)["Strict-Transport-Security"] == "max-age=31536000"
    # a client's own X-Forwarded-Proto is not believed until the proxy header is configured
    assert "Strict-Transport-Security" not in Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied["Strict-Transport-Security"] == "max-age=31536000"


def test_no_template_of_ours_has_inline_script_or_event_handler():
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
    found = []
    for folder in TEMPLATE_DIRS:
        for template in folder.rglob("*.html"):
            text = template.read_text()
            found += [
                f"{template.relative_to(ROOT)}: {match.group(0)}" for match in inline_script.finditer(text)
            ]
            found += [f"{template.relative_to(ROOT)}: {match.group(0)}" for match in handler.finditer(text)]

    assert found == []
