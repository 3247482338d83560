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
