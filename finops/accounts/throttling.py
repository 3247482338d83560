"""Failed logins and unknown API tokens, counted per account and per client address in PostgreSQL.

Each (kind, key) has one row: the failures since the window began with the first of them. One atomic
upsert counts a failure, so every web worker and process counts together without Redis. Past a
kind's limit the caller answers 429 until the window ends (`retry_at`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from finops.accounts.models import AuthFailureCounter, ThrottleKind

# an IPv6 client usually holds a whole /64: counting single addresses would give it 2^64 fresh budgets
IPV6_PREFIX_LENGTH = 64
UNKNOWN_ADDRESS = "unknown"


class Throttled(Exception):  # noqa: N818 - the state the caller reports, as DRF names it
    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"throttled until {retry_at.isoformat()}")
        self.retry_at = retry_at

    def retry_after_seconds(self, *, now: datetime | None = None) -> int:
        return retry_after_seconds(retry_at=self.retry_at, now=now)


@dataclass(frozen=True)
class ThrottleKey:
    kind: str
    key: str

    def __post_init__(self) -> None:
        # a username can be any length; the column holds 255 characters
        object.__setattr__(self, "key", self.key[: AuthFailureCounter._meta.get_field("key").max_length])


def retry_after_seconds(*, retry_at: datetime, now: datetime | None = None) -> int:
    """Whole seconds to wait, rounded up (a Retry-After of 0 would invite an immediate retry)."""
    remaining = (retry_at - (now or timezone.now())).total_seconds()
    return max(1, int(remaining) + (remaining % 1 > 0))


def throttle_window() -> timedelta:
    return timedelta(seconds=settings.FINOPS_THROTTLE_WINDOW_SECONDS)


def throttle_limit(*, kind: str) -> int:
    return {
        ThrottleKind.LOGIN_ACCOUNT: settings.FINOPS_LOGIN_FAILURES_PER_ACCOUNT,
        ThrottleKind.LOGIN_ADDRESS: settings.FINOPS_LOGIN_FAILURES_PER_ADDRESS,
        ThrottleKind.TOKEN_ADDRESS: settings.FINOPS_TOKEN_FAILURES_PER_ADDRESS,
    }[kind]


def client_address(*, request: HttpRequest | None) -> str:
    """The client's address as throttling keys it: REMOTE_ADDR, or the header set by a proxy of ours
    when FINOPS_CLIENT_ADDRESS_HEADER names one (its last entry: the address that proxy saw)."""
    if request is None:
        return UNKNOWN_ADDRESS
    raw = ""
    if settings.FINOPS_CLIENT_ADDRESS_HEADER:
        raw = request.headers.get(settings.FINOPS_CLIENT_ADDRESS_HEADER, "").split(",")[-1].strip()
    raw = raw or request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64] or UNKNOWN_ADDRESS
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX_LENGTH}", strict=False))


def auth_failures_count(*, keys: list[ThrottleKey], now: datetime | None = None) -> datetime | None:
    """Count one failure for each (kind, key), in one statement; the time the caller may retry if any of
    them is now past its limit, else None. Rows are locked in the order given: callers keep one order."""
    now = now or timezone.now()
    window = throttle_window()
    table = AuthFailureCounter._meta.db_table
    values = ", ".join(["(%s, %s, 1, %s)"] * len(keys))
    params: list = [value for throttle_key in keys for value in (throttle_key.kind, throttle_key.key, now)]
    # a window that ended restarts at this failure
    expired = f"{table}.window_started_at <= EXCLUDED.window_started_at - %s"
    sql = (
        f"INSERT INTO {table} (kind, key, failures, window_started_at) VALUES {values} "
        f"ON CONFLICT (kind, key) DO UPDATE SET "
        f"failures = CASE WHEN {expired} THEN 1 ELSE {table}.failures + 1 END, "
        f"window_started_at = CASE WHEN {expired} THEN EXCLUDED.window_started_at "
        f"ELSE {table}.window_started_at END "
        f"RETURNING kind, failures, window_started_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, window, window])
        rows = cursor.fetchall()
    retry_ats = [started + window for kind, failures, started in rows if failures > throttle_limit(kind=kind)]
    return max(retry_ats, default=None)


def auth_failure_uncount(*, throttle_key: ThrottleKey) -> None:
    """Take back one failure counted ahead of a check that then succeeded."""
    AuthFailureCounter.objects.filter(kind=throttle_key.kind, key=throttle_key.key, failures__gt=0).update(
        failures=F("failures") - 1
    )


def auth_failures_forget(*, throttle_key: ThrottleKey) -> None:
    AuthFailureCounter.objects.filter(kind=throttle_key.kind, key=throttle_key.key).delete()


def auth_throttled_until(*, throttle_key: ThrottleKey, now: datetime | None = None) -> datetime | None:
    """When (kind, key) may try again, if it is past its limit now; else None. Counts nothing."""
    now = now or timezone.now()
    window = throttle_window()
    started = (
        AuthFailureCounter.objects.filter(
            kind=throttle_key.kind,
            key=throttle_key.key,
            failures__gte=throttle_limit(kind=throttle_key.kind),
            window_started_at__gt=now - window,
        )
        .values_list("window_started_at", flat=True)
        .first()
    )
    return None if started is None else started + window


def auth_failures_prune(*, now: datetime | None = None) -> int:
    """Delete the counters whose window has ended (they would restart at the next failure anyway)."""
    cutoff = (now or timezone.now()) - throttle_window()
    deleted, _ = AuthFailureCounter.objects.filter(window_started_at__lte=cutoff).delete()
    return deleted


# --- the two doors: password logins and bearer tokens -----------------------------------------------------


def login_attempt_begin(*, username: str, address: str) -> None:
    """Count a login attempt against the account and the address before the password is checked, so
    racing attempts cannot pass the limit; raises Throttled past either limit (the password unchecked)."""
    retry_at = auth_failures_count(
        keys=[
            ThrottleKey(ThrottleKind.LOGIN_ACCOUNT, username),
            ThrottleKey(ThrottleKind.LOGIN_ADDRESS, address),
        ]
    )
    if retry_at is not None:
        raise Throttled(retry_at)


def login_attempt_succeeded(*, username: str, address: str) -> None:
    """A success does not count: the account starts afresh and the address gets its attempt back."""
    auth_failures_forget(throttle_key=ThrottleKey(ThrottleKind.LOGIN_ACCOUNT, username))
    auth_failure_uncount(throttle_key=ThrottleKey(ThrottleKind.LOGIN_ADDRESS, address))


def token_attempt_check(*, address: str) -> None:
    """Raises Throttled while the address is past its limit of unknown tokens."""
    retry_at = auth_throttled_until(throttle_key=ThrottleKey(ThrottleKind.TOKEN_ADDRESS, address))
    if retry_at is not None:
        raise Throttled(retry_at)


def token_attempt_failed(*, address: str) -> None:
    auth_failures_count(keys=[ThrottleKey(ThrottleKind.TOKEN_ADDRESS, address)])
