"""Webhook signatures as the Standard Webhooks spec says, checked against its reference library in
both directions, and the `finops alerts listen` receiver over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
import standardwebhooks

from finops.alerts.listen import listener
from finops.alerts.signing import (
    WebhookVerificationError,
    webhook_secret_key,
    webhook_secret_new,
    webhook_signature,
    webhook_verify,
)

BODY = json.dumps(
    {
        "type": "alert.firing",
        "alert": {
            "id": 3,
            "rule": 7,
            "state": "firing",
            "value": "2.400000",
            "threshold": "2.000000",
            "subject": "task:support/run-42",
        },
        "rule": {"id": 7, "name": "Runaway tasks", "kind": "runaway_task", "op": "gt"},
        "url": "http://localhost:8000/alerts/3/",
    }
).encode()


def test_a_new_secret_is_whsec_and_24_random_bytes():
    first, second = webhook_secret_new(), webhook_secret_new()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 24


def test_our_signature_verifies_with_the_reference_library():
    secret, now = webhook_secret_new(), int(time.time())
    headers = {
        "webhook-id": "msg_2b5e",
        "webhook-timestamp": str(now),
        "webhook-signature": webhook_signature(
            secret=secret, message_id="msg_2b5e", timestamp=now, body=BODY
        ),
    }
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhook_secret_new()).verify(BODY, headers)


def test_the_reference_librarys_signature_verifies_with_ours():
    secret, now = webhook_secret_new(), int(time.time())
    signature = standardwebhooks.Webhook(secret).sign(
        "msg_9", datetime.fromtimestamp(now, UTC), BODY.decode()
    )
    headers = {
        "Webhook-Id": "msg_9",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": f"v1a,xyz {signature}",
    }
    webhook_verify(secret=secret, headers=headers, body=BODY)  # one of several signatures matches


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"webhook-signature": None}, "missing header webhook-signature"),
        ({"webhook-timestamp": "soon"}, "not whole unix seconds"),
        ({"webhook-timestamp": "-301"}, "301 s old"),
        ({"webhook-timestamp": "+400"}, "400 s in the future"),
        ({"body": BODY + b" "}, "no v1 signature matches"),
        ({"secret": "other"}, "no v1 signature matches"),
    ],
)
def test_a_delivery_that_does_not_verify_says_why(change, says):
    secret, now = webhook_secret_new(), 1_800_000_000
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": webhook_signature(secret=secret, message_id="msg_1", timestamp=now, body=BODY),
    }
    body = change.pop("body", BODY)
    if change.pop("secret", None):
        secret = webhook_secret_new()
    for name, value in change.items():
        if value is None:
            del headers[name]
        elif value[0] in "+-":
            headers[name] = str(now + int(value))
        else:
            headers[name] = value
    with pytest.raises(WebhookVerificationError, match=says):
        webhook_verify(secret=secret, headers=headers, body=body, now=now)


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("c2VjcmV0", "starts with 'whsec_'"),
        ("whsec_not base64!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_a_malformed_secret_is_refused(secret, says):
    with pytest.raises(ValueError, match=says):
        webhook_secret_key(secret)


def test_the_listener_prints_verified_deliveries_and_refuses_forged_ones():
    secret, out, seen = webhook_secret_new(), io.StringIO(), []
    server = listener(secret=secret, port=0, out=out, on_delivery=lambda *args: seen.append(args))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        now = int(time.time())
        good = webhook_signature(secret=secret, message_id="msg_a", timestamp=now, body=BODY)
        statuses = []
        for signature in (
            good,
            webhook_signature(secret=webhook_secret_new(), message_id="msg_a", timestamp=now, body=BODY),
        ):
            request = urllib.request.Request(
                url,
                data=BODY,
                headers={
                    "webhook-id": "msg_a",
                    "webhook-timestamp": str(now),
                    "webhook-signature": signature,
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 — our http URL
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [204, 401]
    assert [error for _, _, error in seen] == [
        None,
        "no v1 signature matches: another secret, or the body was changed",
    ]
    printed = out.getvalue().splitlines()
    assert (
        "✓ signature verified  msg_a  alert.firing · rule 'Runaway tasks' · task:support/run-42 · value 2.400000 > 2.000000 · http://localhost:8000/alerts/3/"
        in printed[0]
    )
    assert "✗ refused: no v1 signature matches" in printed[1]
