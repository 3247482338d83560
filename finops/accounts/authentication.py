"""`Authorization: Bearer <token>` for the API and the OTLP endpoint."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from finops.accounts.models import ApiToken
from finops.accounts.services import token_digest


def token_for_secret(secret: str) -> ApiToken | None:
    token = ApiToken.objects.select_related("team").filter(digest=token_digest(secret)).first()
    if token is None or token.revoked_at is not None:
        return None
    return token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        token = token_for_secret(header[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        # last_used_at to the minute: one UPDATE per token per minute, not per request
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token, token)

    def authenticate_header(self, request) -> str:
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how API tokens authenticate."""

    target_class = "finops.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API token from `finops token create`"}
