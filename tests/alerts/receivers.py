"""Real receivers for the alert channels' tests: an HTTP server on an ephemeral port that verifies the
Standard Webhooks signature on its own (written here from the spec, not with finops' signing code), an
SMTP server (aiosmtpd), and the rows a delivery needs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from finops.alerts.models import (
    Alert,
    AlertChannel,
    AlertRule,
    AlertState,
    Delivery,
    DeliveryEvent,
    RuleKind,
)
from tests.core.conftest import free_port

TOLERANCE_SECONDS = 5 * 60  # the reference libraries' default


class SignatureInvalid(Exception):
    pass


def standard_webhook_verify(
    *, secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """The receiving side of https://www.standardwebhooks.com: the key is the base64 after `whsec_`;
    the signed content is `{id}.{timestamp}.{body}`; the header holds space-separated `v1,<base64>`
    entries, one of which must match; the timestamp must be within `tolerance` of now."""
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureInvalid(f"timestamp {timestamp} is more than {tolerance} s from now ({int(now)})")
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise SignatureInvalid("no v1 signature matches")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verify_error: str | None  # None: the signature verified (or the receiver checks none)


@dataclass
class Answer:
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow receiver)


class WebhookReceiver:
    """ThreadingHTTPServer on 127.0.0.1:<ephemeral>. With a `secret` it answers 401 to a request whose
    signature does not verify; otherwise it plays `answers` in order (then `default`, a 204), recording
    every request."""

    def __init__(self, *, secret: str | None = None) -> None:
        self.secret = secret
        self.requests: list[Received] = []
        self.answers: deque[Answer] = deque()
        self.default = Answer()  # once `answers` is used up
        self.clock = time.time  # the receiver's now, for the timestamp tolerance
        self.release = threading.Event()  # ends a delayed answer early at teardown
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                verify_error = None
                if receiver.secret is not None:
                    try:
                        standard_webhook_verify(
                            secret=receiver.secret, headers=headers, body=body, now=receiver.clock()
                        )
                    except SignatureInvalid as error:
                        verify_error = str(error)
                receiver.requests.append(Received(self.path, headers, body, verify_error))
                answer = (
                    Answer(401, b"signature: " + verify_error.encode())
                    if verify_error
                    else (receiver.answers.popleft() if receiver.answers else receiver.default)
                )
                if answer.delay:
                    receiver.release.wait(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, format, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/finops"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class SmtpRecorder:
    """aiosmtpd handler keeping each envelope; `refuse` makes it refuse every recipient with a 550."""

    def __init__(self) -> None:
        self.envelopes = []
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.recorder = SmtpRecorder()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


# The alert the deliveries are about: spend of one agent over a day, past $25.
RULE_NAME = "Refund bot spend — day"  # a non-ASCII dash: the signature covers the UTF-8 bytes
SUBJECT = "agent:support/refund-bot"
VALUE = Decimal("25.310000000000")
THRESHOLD = Decimal("25.000000000000")
ALERT_URL = "http://finops.example/alerts/"


def delivery_make(
    *, team, kind: str, target: str, secret: str = "", now: datetime, event: str = DeliveryEvent.FIRING
) -> Delivery:
    """A firing alert of a threshold rule and one delivery of it to a new channel, with the webhook body
    SPEC.md gives ({"type", "alert", "rule", "url"}) as its payload."""
    channel = AlertChannel.objects.create(
        team=team, name=f"{kind} channel", kind=kind, target=target, secret=secret
    )
    rule = AlertRule.objects.create(
        name=RULE_NAME,
        team=team,
        kind=RuleKind.THRESHOLD,
        metric="cost_usd",
        op="gt",
        value=Decimal(25),
        window="1d",
    )
    rule.channels.add(channel)
    alert = Alert.objects.create(
        rule=rule,
        team=team,
        subject=SUBJECT,
        state=AlertState.FIRING,
        value=VALUE,
        threshold=THRESHOLD,
        summary="support/refund-bot spent $25.31 in the last 24 hours",
        started_at=now,
        fired_at=now,
        last_evaluated_at=now,
    )
    payload = {
        "type": str(event),
        "alert": {
            "id": alert.pk,
            "rule": rule.pk,
            "state": "firing",
            "value": str(VALUE),
            "threshold": str(THRESHOLD),
            "started_at": now.isoformat(),
            "fired_at": now.isoformat(),
            "resolved_at": None,
            "acknowledged_by": None,
            "subject": SUBJECT,
        },
        "rule": {
            "id": rule.pk,
            "name": RULE_NAME,
            "team": team.slug if team else None,
            "kind": "threshold",
            "metric": "cost_usd",
            "op": "gt",
            "value": "25.000000",
            "window": "1d",
        },
        "url": f"{ALERT_URL}{alert.pk}",
    }
    return Delivery.objects.create(alert=alert, channel=channel, team=team, event=event, payload=payload)
