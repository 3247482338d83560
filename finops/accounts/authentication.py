"""How people and tokens authenticate: passwords (throttled per account and address) for the UI and the
admin, `Authorization: Bearer <token>` (throttled per address) for the API and the OTLP endpoint."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from finops.accounts.models import ApiToken, Team
from finops.accounts.services import token_digest
from finops.accounts.throttling import (
    Throttled,
    client_address,
    login_attempt_begin,
    login_attempt_succeeded,
    token_attempt_check,
    token_attempt_failed,
)

# set on the request of a throttled login, for LoginThrottleMiddleware to answer 429
LOGIN_RETRY_AT_ATTRIBUTE = "finops_login_retry_at"


class LoginThrottled(PermissionDenied):
    """PermissionDenied: django.contrib.auth.authenticate() stops at it without asking other backends."""


class ThrottledModelBackend(ModelBackend):
    """Django's username and password check behind the login throttle, for every form that logs in (the
    login page and the admin's): the way django-axes' backend does it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = client_address(request=request)
        try:
            login_attempt_begin(username=username, address=address)
        except Throttled as throttled:
            if request is not None:
                setattr(request, LOGIN_RETRY_AT_ATTRIBUTE, throttled.retry_at)
            raise LoginThrottled(str(throttled)) from throttled
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_attempt_succeeded(username=username, address=address)
        return user


def token_for_request(*, request: HttpRequest, secret: str) -> ApiToken | None:
    """The live token with this secret. An unknown one counts against the client's address, and raises
    Throttled while that address is past its limit. A live token is never refused for its address: one
    stale agent behind a gateway must not lock every other agent's calls (and guard checks) out, and a
    token is 256 random bits, so what the throttle buys is a noisy guesser's silence, not secrecy."""
    token = token_for_secret(secret)
    if token is None:
        address = client_address(request=request)
        token_attempt_check(address=address)
        token_attempt_failed(address=address)
    return token


def _columns(model) -> list:
    return list(model._meta.concrete_fields)


# every API request looks its token up: one statement written once, not compiled by the ORM each time
# (that compilation cost more CPU than the rest of a small request); the rows become the same model
# instances as ApiToken.objects.select_related("team") would give
_TOKEN_FIELDS, _TEAM_FIELDS = _columns(ApiToken), _columns(Team)
_TOKEN_SQL = (
    "SELECT "
    + ", ".join(
        [f'token."{field.column}"' for field in _TOKEN_FIELDS]
        + [f'team."{field.column}"' for field in _TEAM_FIELDS]
    )
    + f" FROM {ApiToken._meta.db_table} AS token LEFT JOIN {Team._meta.db_table} AS team"
    f' ON team."{Team._meta.pk.column}" = token."{ApiToken._meta.get_field("team").column}"'
    f' WHERE token."{ApiToken._meta.get_field("digest").column}" = %s'
)


def _instance(model, fields: list, values: tuple):
    converted = []
    for field, value in zip(fields, values, strict=True):
        for converter in field.get_db_converters(connection):
            value = converter(value, field, connection)
        converted.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def token_for_secret(secret: str) -> ApiToken | None:
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_SQL, [token_digest(secret)])
        row = cursor.fetchone()
    if row is None:
        return None
    token = _instance(ApiToken, _TOKEN_FIELDS, row[: len(_TOKEN_FIELDS)])
    if token.revoked_at is not None:
        return None
    team_row = row[len(_TOKEN_FIELDS) :]
    token._state.fields_cache["team"] = (
        None if team_row[0] is None else _instance(Team, _TEAM_FIELDS, team_row)
    )
    return token


def token_touch(token: ApiToken) -> None:
    """Note that the token was used: to the minute, so one UPDATE per token per minute, not per request."""
    token_touch_by_id(token_id=token.pk, last_used_at=token.last_used_at)


def token_touch_by_id(*, token_id: int, last_used_at) -> None:
    """token_touch for a token known by its id and when it was last noted as used."""
    now = timezone.now()
    if last_used_at is None or (now - last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = token_for_request(request=request, secret=header[1])
        except Throttled as throttled:
            raise exceptions.Throttled(
                wait=throttled.retry_after_seconds(),
                detail="Too many unknown API tokens from your address.",
            ) from throttled
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API token.")
        token_touch(token)
        return (token, token)

    def authenticate_header(self, request) -> str:
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how API tokens authenticate."""

    target_class = "finops.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API token from `finops token create`"}
