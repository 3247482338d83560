"""How a delivery reaches its channel: a signed webhook, a Slack incoming webhook, or an email (SPEC.md,
"Alerts"). One attempt, no retry and no database write here: `finops.alerts.delivery` records what
happened and decides when to try again.

HTTP goes through `http.client` rather than urllib, so nothing follows a redirect (a webhook URL that
answers 3xx is misconfigured, and following it would send the signed alert somewhere unchecked) and the
connect and read share one deadline, `FINOPS_ALERT_HTTP_TIMEOUT_SECONDS`."""

from __future__ import annotations

import http.client
import json
import smtplib
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from finops.alerts.models import AlertChannel, ChannelKind, Delivery, DeliveryEvent
from finops.alerts.signing import webhook_signature

USER_AGENT = "finops-alerts/1"
# Of an answer's body only this much is read: enough for an error message, never a large page.
RESPONSE_READ_LIMIT = 4096
ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to. `permanent`: no retry can fix it (the channel's URL or secret is
    unusable), so the delivery gives up at once instead of retrying for hours."""

    ok: bool
    status_code: int | None = None
    error: str = ""
    permanent: bool = False


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    location: str


class ChannelConfigError(ValueError):
    """The channel cannot be used as configured (a bad URL, a bad secret)."""


def _http_post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpAnswer:
    """POST once; no redirect followed, one deadline for connecting, sending and reading the answer."""
    # errors name the scheme or the port, never the URL: a Slack webhook's URL is its credential
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ChannelConfigError(f"the target is not an http(s) URL with a host (scheme {parts.scheme!r})")
    try:
        port = parts.port
    except ValueError:
        raise ChannelConfigError("the target's port is not a number from 0 to 65535") from None
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    deadline = time.monotonic() + timeout
    connection = connection_class(parts.hostname, port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        sock = connection.sock  # kept: getresponse() lets go of it when the answer closes the connection
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        answer_body = response.read(RESPONSE_READ_LIMIT)
        return HttpAnswer(
            status=response.status, body=answer_body, location=response.getheader("location", "")
        )
    finally:
        connection.close()


def _answer_text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text[:ERROR_TEXT_LIMIT] + ("…" if len(text) > ERROR_TEXT_LIMIT else "")


def _post_result(*, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    """POST and judge the answer: 2xx is sent; a 3xx names where it pointed; anything else keeps the
    status and the start of the answer's body (Slack puts its reason there, e.g. `invalid_payload`)."""
    timeout = settings.FINOPS_ALERT_HTTP_TIMEOUT_SECONDS
    try:
        answer = _http_post(url=url, body=body, headers=headers, timeout=timeout)
    except ChannelConfigError as error:
        return SendResult(ok=False, error=str(error), permanent=True)
    except TimeoutError:
        return SendResult(ok=False, error=f"no answer within {timeout} s (connect and read)")
    except (OSError, http.client.HTTPException) as error:
        return SendResult(ok=False, error=f"{type(error).__name__}: {error}"[:ERROR_TEXT_LIMIT])
    if 200 <= answer.status < 300:
        return SendResult(ok=True, status_code=answer.status)
    if 300 <= answer.status < 400:
        where = answer.location or "(no Location header)"
        return SendResult(
            ok=False,
            status_code=answer.status,
            error=f"HTTP {answer.status}: redirect to {where} not followed",
        )
    text = _answer_text(answer.body)
    error = f"HTTP {answer.status}: {text}" if text else f"HTTP {answer.status} (empty body)"
    return SendResult(ok=False, status_code=answer.status, error=error)


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_send(*, channel: AlertChannel, delivery: Delivery, now: datetime) -> SendResult:
    """A JSON POST of the payload, signed as Standard Webhooks says: `webhook-id` is the delivery's
    message id (the same on every retry, so the receiver can deduplicate), `webhook-timestamp` this
    attempt's time (so a receiver's replay window holds for a retry hours later)."""
    body = webhook_body(delivery.payload)
    timestamp = int(now.timestamp())
    try:
        signature = webhook_signature(
            secret=channel.secret, message_id=delivery.message_id, timestamp=timestamp, body=body
        )
    except ValueError as error:
        return SendResult(ok=False, error=f"the channel's secret is unusable: {error}", permanent=True)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    return _post_result(url=channel.target, body=body, headers=headers)


@dataclass(frozen=True)
class AlertMessage:
    """The words of a notification, from the delivery's payload (what held when it was made), falling
    back to the alert row for what the payload lacks."""

    event: str
    rule_name: str
    subject: str
    metric: str
    op: str
    value: str
    threshold: str
    summary: str
    url: str
    started_at: str
    fired_at: str
    resolved_at: str

    @property
    def state_label(self) -> str:
        return "RESOLVED" if self.event == DeliveryEvent.RESOLVED else "FIRING"

    @property
    def comparison(self) -> str:
        """e.g. "cost_usd 25.31 > 25" (the value and the threshold it crossed)."""
        symbol = "<" if self.op == "lt" else ">"
        left = " ".join(part for part in (self.metric, self.value or "?") if part)
        return f"{left} {symbol} {self.threshold}" if self.threshold else left


def _number_text(value: Any) -> str:
    """A Decimal-as-string without the trailing zeros the API's fixed places add ("25.000000" -> "25")."""
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = format(number.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def alert_message(*, delivery: Delivery) -> AlertMessage:
    payload = delivery.payload if isinstance(delivery.payload, dict) else {}
    alert = payload.get("alert") if isinstance(payload.get("alert"), dict) else {}
    rule = payload.get("rule") if isinstance(payload.get("rule"), dict) else {}
    row = delivery.alert
    return AlertMessage(
        event=payload.get("type") or delivery.event,
        rule_name=str(rule.get("name") or row.rule.name),
        subject=str(alert.get("subject") or row.subject),
        metric=str(rule.get("metric") or row.rule.metric or rule.get("kind") or row.rule.kind),
        op=str(rule.get("op") or row.rule.op),
        value=_number_text(alert.get("value", row.value)),
        threshold=_number_text(alert.get("threshold", row.threshold)),
        summary=str(alert.get("summary") or row.summary or ""),
        url=str(payload.get("url") or ""),
        started_at=str(alert.get("started_at") or (row.started_at.isoformat() if row.started_at else "")),
        fired_at=str(alert.get("fired_at") or (row.fired_at.isoformat() if row.fired_at else "")),
        resolved_at=str(alert.get("resolved_at") or (row.resolved_at.isoformat() if row.resolved_at else "")),
    )


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn reads &, < and > as markup: escape them as its docs say."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(*, message: AlertMessage) -> dict[str, Any]:
    """`text` is the notification's fallback (and what a Slack-compatible receiver without blocks shows);
    the blocks say the same with the link as a link."""
    headline = f"[finops] {message.state_label}: {message.rule_name} — {message.subject}"
    text = f"{headline}: {message.comparison}" + (f" {message.url}" if message.url else "")
    lines = [
        f"*{_slack_escape(message.state_label)}*: *{_slack_escape(message.rule_name)}*",
        f"Subject: `{_slack_escape(message.subject)}`",
        f"Value: {_slack_escape(message.comparison)}",
    ]
    if message.summary:
        lines.append(_slack_escape(message.summary))
    if message.url:
        lines.append(f"<{message.url}|Open the alert>")
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def slack_send(*, channel: AlertChannel, delivery: Delivery, now: datetime) -> SendResult:
    body = json.dumps(slack_body(message=alert_message(delivery=delivery)), ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    return _post_result(url=channel.target, body=body, headers=headers)


def email_subject(*, message: AlertMessage) -> str:
    return f"[finops] {message.state_label}: {message.rule_name} — {message.subject}"


def email_text(*, message: AlertMessage, message_id: str) -> str:
    lines = [
        f"{message.state_label}: {message.rule_name}",
        "",
        f"Subject:   {message.subject}",
        f"Value:     {message.value or '?'}" + (f" ({message.metric})" if message.metric else ""),
        f"Threshold: {('less than ' if message.op == 'lt' else 'greater than ') + message.threshold}"
        if message.threshold
        else "Threshold: -",
    ]
    if message.summary:
        lines += ["", message.summary]
    lines.append("")
    for label, when in (
        ("Started", message.started_at),
        ("Fired", message.fired_at),
        ("Resolved", message.resolved_at),
    ):
        if when:
            lines.append(f"{label + ':':<10} {when}")
    if message.url:
        lines += ["", f"Open the alert: {message.url}"]
    lines += ["", "--", f"finops alert notification {message_id}"]
    return "\n".join(lines) + "\n"


def email_send(*, channel: AlertChannel, delivery: Delivery, now: datetime) -> SendResult:
    """Through Django's mail backend (EMAIL_* settings). The Message-ID is the delivery's, so a retry
    that did reach the mailbox before is recognisably the same message."""
    recipients = [address.strip() for address in channel.target.split(",") if address.strip()]
    if not recipients:
        return SendResult(ok=False, error="the channel has no email address", permanent=True)
    message = alert_message(delivery=delivery)
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "finops"
    email = EmailMessage(
        subject=email_subject(message=message),
        body=email_text(message=message, message_id=delivery.message_id),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Message-ID": f"<{delivery.message_id}@{domain}>", "X-Finops-Event": message.event},
        connection=get_connection(fail_silently=False),
    )
    try:
        email.send(fail_silently=False)
    except smtplib.SMTPResponseException as error:
        reply = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else error.smtp_error
        )
        return SendResult(ok=False, status_code=error.smtp_code, error=f"SMTP {error.smtp_code}: {reply}")
    except smtplib.SMTPRecipientsRefused as error:
        refused = "; ".join(
            f"{address}: {code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
            for address, (code, reply) in error.recipients.items()
        )
        return SendResult(ok=False, error=f"SMTP recipients refused: {refused}"[:ERROR_TEXT_LIMIT])
    except TimeoutError:
        return SendResult(ok=False, error=f"the mail server did not answer within {settings.EMAIL_TIMEOUT} s")
    except (OSError, smtplib.SMTPException) as error:
        return SendResult(ok=False, error=f"{type(error).__name__}: {error}"[:ERROR_TEXT_LIMIT])
    return SendResult(ok=True)


SENDERS = {ChannelKind.WEBHOOK: webhook_send, ChannelKind.SLACK: slack_send, ChannelKind.EMAIL: email_send}


def channel_send(*, delivery: Delivery, now: datetime) -> SendResult:
    """One attempt of a delivery to its channel, by the channel's kind."""
    sender = SENDERS.get(delivery.channel.kind)
    if sender is None:
        return SendResult(ok=False, error=f"unknown channel kind {delivery.channel.kind!r}", permanent=True)
    return sender(channel=delivery.channel, delivery=delivery, now=now)
