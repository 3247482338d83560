"""A short path past Django REST Framework for the API's hottest, simplest requests.

An agent asks the guard check before every LLM call, so that endpoint's cost per request is the cost
the product adds to every call (issue 8: p99 under 10 ms at 500 requests/s, on two cores). DRF's
machinery (content negotiation, parsers, serializer fields, permission and throttle classes) costs
about a millisecond of CPU a request, more than the check itself. `with_fast_path` puts a plain
function in front of a DRF view: it answers only the request it can answer with certainty — a live
API token (`Authorization: Bearer`), a flat JSON body whose every value it reads strictly — and hands
every other request (a session, an unknown token, anything malformed or unusual) to the DRF view
unchanged. So every error, 401, 403, 404 and 429 keeps coming from one place, and the fast answer is
the DRF view's answer, byte for byte the same JSON (tests/guardrails/test_fast_path.py holds the two
against each other on valid and invalid bodies).

The request still passes through Django's middleware (security headers, the connection handling of
`CONN_MAX_AGE` and its health check) and URL resolution; the view keeps DRF's `cls`, so the OpenAPI
schema describes it as before.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer

from finops.accounts.authentication import token_for_secret, token_touch
from finops.accounts.models import ApiToken

BEARER = re.compile(r"^Bearer ([A-Za-z0-9_\-]{1,200})$")
MAX_BODY = 4096  # a guard check body is about 150 bytes; anything larger takes the full path
JSON_TYPES = ("application/json",)


class Declined(Exception):
    """The fast path cannot answer this request with certainty: the DRF view will."""


def with_fast_path(drf_view: Callable, answer: Callable[[HttpRequest, ApiToken], HttpResponse]) -> Callable:
    """`drf_view` (an APIView's as_view()) with `answer(request, token)` tried first for requests
    carrying a live API token; `answer` raises Declined to leave the request to the DRF view."""

    @functools.wraps(drf_view)  # keeps cls, initkwargs and csrf_exempt for URL conf and schema
    def view(request: HttpRequest, *args, **kwargs):
        token = bearer_token(request)
        if token is not None:
            try:
                return answer(request, token)
            except Declined:
                pass
        return drf_view(request, *args, **kwargs)

    return view


def json_response(data, *, allow: str) -> HttpResponse:
    """What DRF's Response would send for `data`: its renderer's bytes, its headers."""
    response = HttpResponse(JSONRenderer().render(data), content_type="application/json")
    response["Vary"] = "Accept"
    response["Allow"] = allow
    return response


def bearer_secret(request: HttpRequest) -> str | None:
    """The secret of a well-formed `Authorization: Bearer …` header, else None."""
    header = BEARER.match(request.META.get("HTTP_AUTHORIZATION", ""))
    return None if header is None else header.group(1)


def bearer_token(request: HttpRequest) -> ApiToken | None:
    """The live token of `Authorization: Bearer …`, else None (no header, a malformed or unknown one:
    the DRF view answers those, and counts an unknown token against the address exactly once)."""
    secret = bearer_secret(request)
    if secret is None:
        return None
    token = token_for_secret(secret)
    if token is not None:
        token_touch(token)
    return token


def json_object(request: HttpRequest, *, fields: frozenset[str]) -> dict:
    """A POST's body as a flat JSON object of no other keys than `fields`, else Declined."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if request.method != "POST" or content_type not in JSON_TYPES:
        raise Declined
    length = request.META.get("CONTENT_LENGTH") or "0"
    body = request.body if length.isdigit() and int(length) <= MAX_BODY else None
    # one object, nothing nested: the parser never recurses (deep nesting is the full path's 400)
    if body is None or body.count(b"{") != 1 or b"[" in body:
        raise Declined
    try:
        value = json.loads(body)
    except ValueError:
        raise Declined from None
    if not isinstance(value, dict) or not value.keys() <= fields:
        raise Declined
    return value


def text(value, *, max_length: int, required: bool, pattern: re.Pattern | None = None) -> str | None:
    """A string as DRF's CharField would accept it unchanged (nothing to trim, no NUL or lone
    surrogate, printable), else Declined; None or "" when absent and not required."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > max_length or (required and not value):
        raise Declined
    if value != value.strip() or not value.isprintable():
        raise Declined
    if pattern is not None and not pattern.match(value):
        raise Declined
    return value


def whole_number(value, *, maximum: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= maximum:  # a bool is an int to Python, not to DRF
        raise Declined
    return value


PLAIN_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,12})?$")


def money(value) -> Decimal | None:
    """A non-negative amount as a decimal string (the API's money is a string: finops.api.fields) of
    at most 16 digits before the point and 12 after; anything else (a number, an exponent, a sign) is
    left to DRF's DecimalField and its errors."""
    if value is None:
        return None
    if isinstance(value, str) and PLAIN_DECIMAL.match(value):
        return Decimal(value)
    raise Declined
