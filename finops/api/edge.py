"""The guard check and whoami answered in front of Django's request cycle, for API tokens.

An agent asks the guard check before every LLM call (issue 8: p99 under 10 ms at 500 requests/s on two
cores, at most 2 ms over a trivial authenticated endpoint of the same server). `finops.api.fast`
already answers these past DRF; what was left was Django's own cycle around them: building the
HttpRequest, nine middleware, URL resolution and the request signals cost about as much CPU as the
check itself. `EdgeApplication` wraps the WSGI application: for exactly these two paths it builds a
small request, runs the same fast answer (`guard_check_fast`, `whoami_fast`), adds the headers the
middleware would have added, and returns. Whatever the fast answer declines (no token, an unknown
one, a session, a body it does not read with certainty, a host not allowed, plain HTTP where HTTPS is
required) goes to Django untouched, with its body intact, so every error keeps coming from one place.
tests/guardrails/test_edge.py holds the two answers against each other, headers included.

The database connection is Django's own (thread-local, CONN_MAX_AGE) and is handled as Django's request
signals handle it: unusable or obsolete connections are closed before and after. Its health check (a
SELECT 1 round trip before each request's first query) is skipped for a connection that answered in
the last HEALTHY_FOR_SECONDS. The guard check reads its token in its own statement
(finops.guardrails.check.guard_check_for_token): one round trip in all, and a revoked token is refused
from the next request on, as everywhere else.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus

from django.conf import settings
from django.core import signals
from django.db import connection
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host

from finops.api import fast
from finops.core.middleware import content_security_policy_header, permissions_policy_header

logger = logging.getLogger("django.request")

# A connection that answered this recently is taken as alive without Django's health check (a SELECT 1
# round trip before the first query of every request); one idle longer is checked as Django would.
# A connection lost in between costs one answer of FINOPS_GUARD_FAIL_MODE, as it would at any moment.
HEALTHY_FOR_SECONDS = 2.0

# What a WSGI server may set itself (PEP 3333 and CGI's names); anything else in the environ that is the
# process environment's, with the same value, is dropped (see EdgeApplication.process_variables).
CGI_NAMES = frozenset(
    {
        "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "HTTPS", "PATH_INFO",
        "PATH_TRANSLATED", "QUERY_STRING", "RAW_URI", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT",
        "REMOTE_PORT", "REMOTE_USER", "REQUEST_METHOD", "REQUEST_URI", "SCRIPT_NAME", "SERVER_NAME",
        "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
    }
)  # fmt: skip

Answer = Callable[["EdgeRequest"], HttpResponse]  # raises finops.api.fast.Declined to leave it to Django


class EdgeRequest:
    """What the fast answers read of a request: META, method, GET (its truthiness), body."""

    def __init__(self, environ: dict, body: bytes) -> None:
        self.META = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.GET = environ.get("QUERY_STRING", "")
        self.body = body


def _status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def middleware_headers() -> list[tuple[str, str]]:
    """The headers Django's middleware adds to an API answer of a plain-HTTP token request (settings'
    SecurityMiddleware, XFrameOptionsMiddleware, finops.core's SecurityHeadersMiddleware)."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append(("Referrer-Policy", settings.SECURE_REFERRER_POLICY))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS))
    headers.append(
        ("Content-Security-Policy", content_security_policy_header(settings.FINOPS_CONTENT_SECURITY_POLICY))
    )
    headers.append(("Permissions-Policy", permissions_policy_header(settings.FINOPS_PERMISSIONS_POLICY)))
    return headers


def hsts_header() -> str | None:
    """SecurityMiddleware's Strict-Transport-Security value for a secure request, None when off."""
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


class EdgeApplication:
    def __init__(self, django_application: Callable, routes: dict[str, Answer]) -> None:
        self.django = django_application
        self.routes = routes
        self.headers = middleware_headers()
        self.proxy_ssl_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        self.hsts = hsts_header()
        self.recent = threading.local()  # per thread, as Django's connections
        # granian copies the whole process environment into every request's environ (as Django's
        # runserver does): DATABASE_URL, SECRET_KEY and every other secret would be in request.META, and
        # so in any error report that lists it (Django's mailed 500s do, DEBUG or not). A variable named
        # like a header (HTTP_PROXY, often with a password in it) would even pass for one the client sent.
        # A header the client did send with exactly the process's value is dropped too: the price of
        # telling the two apart, where the server gives no way to.
        self.process_variables = tuple(
            (name, value) for name, value in os.environ.items() if name not in CGI_NAMES
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        for name, value in self.process_variables:
            if environ.get(name) == value:
                del environ[name]
        answer = self.routes.get(environ.get("PATH_INFO", ""))
        if answer is None or not self._ours(environ):
            return self.django(environ, start_response)
        body = self._body(environ)
        if body is None:
            return self.django(environ, start_response)
        # Django's request signals, as its handler sends them (closing unusable or obsolete connections;
        # a test that keeps its transaction open disconnects that, as it does for Django's handler)
        signals.request_started.send(sender=self.__class__, environ=environ)
        if time.monotonic() - getattr(self.recent, "ok_at", float("-inf")) < HEALTHY_FOR_SECONDS:
            connection.health_check_done = True
        response = None
        try:
            response = answer(EdgeRequest(environ, body))
            if not connection.errors_occurred:
                self.recent.ok_at = time.monotonic()
        except fast.Declined:
            pass
        except Exception:
            logger.exception("the edge's answer to %s failed", environ.get("PATH_INFO"))
            response = fast.json_response({"message": "Server error", "extra": {}}, allow="")
            response.status_code = 500
            del response["Allow"]
        finally:
            signals.request_finished.send(sender=self.__class__)
        if response is None:  # declined: Django's, after this request's signals, with its own
            if body:  # what was read, Django reads again (nothing read: the input is as it came)
                environ["wsgi.input"] = io.BytesIO(body)
            return self.django(environ, start_response)
        content = response.content
        headers = [*response.items(), ("Content-Length", str(len(content))), *self.headers]
        if self.hsts and self._secure(environ):
            headers.append(("Strict-Transport-Security", self.hsts))
        start_response(_status_line(response.status_code), headers)
        return [content]

    def _ours(self, environ: dict) -> bool:
        """Only what Django would answer the same way: a token, an allowed host, no redirect to HTTPS."""
        if "HTTP_AUTHORIZATION" not in environ or settings.USE_X_FORWARDED_HOST:
            return False
        if settings.SECURE_SSL_REDIRECT and not self._secure(environ):
            return False  # SecurityMiddleware's redirect (or its exemptions): Django's to answer
        domain, _ = split_domain_port(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host
        return bool(domain) and validate_host(domain, allowed)

    def _secure(self, environ: dict) -> bool:
        """HttpRequest.is_secure's answer (SECURE_PROXY_SSL_HEADER, else the server's scheme)."""
        if self.proxy_ssl_header:
            header, secure_value = self.proxy_ssl_header
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    @staticmethod
    def _body(environ: dict) -> bytes | None:
        """The body when it is small enough for a fast answer (None: let Django read it)."""
        length = environ.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > fast.MAX_BODY:
            return None
        size = int(length)
        return environ["wsgi.input"].read(size) if size else b""


def edge_application(django_application: Callable) -> EdgeApplication:
    """The WSGI application finops serves: Django, with the guard check and whoami in front of it, at
    the paths the URL conf gives them."""
    from django.urls import reverse

    from finops.accounts.api import whoami_fast
    from finops.guardrails.api import guard_check_edge

    def whoami_edge(request: EdgeRequest) -> HttpResponse:
        token = fast.bearer_token(request)
        if token is None:
            raise fast.Declined
        return whoami_fast(request, token)

    return EdgeApplication(
        django_application,
        routes={reverse("api:guard-check"): guard_check_edge, reverse("api:whoami"): whoami_edge},
    )
