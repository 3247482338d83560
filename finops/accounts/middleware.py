"""A throttled login answers 429 with when to retry, whichever form (login page, admin) it came from."""

from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone

from finops.accounts.authentication import LOGIN_RETRY_AT_ATTRIBUTE
from finops.accounts.throttling import retry_after_seconds

TOO_MANY_REQUESTS = 429
THROTTLED_TEMPLATE = "429.html"


class LoginThrottleMiddleware:
    """ThrottledModelBackend marks the request; the login form then fails as for a wrong password, and
    this turns that answer into a 429 (django-axes' middleware does the same)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        retry_at = getattr(request, LOGIN_RETRY_AT_ATTRIBUTE, None)
        if retry_at is None:
            return response
        seconds = retry_after_seconds(retry_at=retry_at)
        throttled = render(
            request,
            THROTTLED_TEMPLATE,
            {"retry_at": retry_at, "retry_minutes": -(-seconds // 60), "now": timezone.now()},
            status=TOO_MANY_REQUESTS,
        )
        throttled["Retry-After"] = str(seconds)
        return throttled
