"""Standard Webhooks signing (https://www.standardwebhooks.com, SPEC.md "Alerts"): a webhook channel's
secret is `whsec_` + base64 of 24 random bytes; a delivery is signed with
`v1,<base64 HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the secret's
base64-decoded part after `whsec_`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 — the prefix, not a secret


def webhook_secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a secret; ValueError saying what is wrong when it is not `whsec_` + base64."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret's key is 24 to 64 bytes (32 to 88 base64 characters)")
    return key


def webhook_signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class WebhookVerificationError(ValueError):
    """A delivery whose headers or signature do not verify; the message says which."""


TOLERANCE_SECONDS = 300  # the Standard Webhooks reference libraries' window against replays


def webhook_verify(*, secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Verify a received delivery as a receiver should (the check our own `finops alerts listen`
    makes): the three headers present, the timestamp within 5 minutes of `now`, and one `v1,`
    signature of the header's space-separated list equal to ours (compared in constant time)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in HEADERS if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header {', '.join(missing)}")
    try:
        timestamp = int(lowered["webhook-timestamp"])
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not whole unix seconds") from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > TOLERANCE_SECONDS:
        raise WebhookVerificationError(
            f"webhook-timestamp is {abs(skew):.0f} s {'old' if skew > 0 else 'in the future'} "
            f"(at most {TOLERANCE_SECONDS} s): a replay, or the clocks disagree"
        )
    expected = webhook_signature(
        secret=secret, message_id=lowered["webhook-id"], timestamp=timestamp, body=body
    )
    for signature in lowered["webhook-signature"].split():
        if signature.startswith("v1,") and hmac.compare_digest(signature, expected):
            return
    raise WebhookVerificationError("no v1 signature matches: another secret, or the body was changed")


HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
