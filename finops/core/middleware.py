"""Response headers Django 5.2 does not send itself: Content-Security-Policy and Permissions-Policy.

The policies are settings (FINOPS_CONTENT_SECURITY_POLICY, FINOPS_PERMISSIONS_POLICY). No page of ours
has an inline script or `on*=` handler, so the policy allows scripts from our own origin only.
"""

from __future__ import annotations

from django.conf import settings


def content_security_policy_header(policy: dict[str, list[str]]) -> str:
    return "; ".join(f"{directive} {' '.join(sources)}" for directive, sources in policy.items())


def permissions_policy_header(policy: dict[str, str]) -> str:
    return ", ".join(f"{feature}={allowlist}" for feature, allowlist in policy.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.content_security_policy = content_security_policy_header(settings.FINOPS_CONTENT_SECURITY_POLICY)
        self.permissions_policy = permissions_policy_header(settings.FINOPS_PERMISSIONS_POLICY)

    def __call__(self, request):
        response = self.get_response(request)
        # a view may set a narrower policy of its own
        response.headers.setdefault("Content-Security-Policy", self.content_security_policy)
        response.headers.setdefault("Permissions-Policy", self.permissions_policy)
        return response
