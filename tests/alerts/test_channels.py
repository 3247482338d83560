"""Each channel kind against a real receiver: a local HTTP server that verifies the Standard Webhooks
signature itself, a Slack-like endpoint, and a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import json
import time
from datetime import timedelta
from email.header import decode_header, make_header

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from finops.alerts.delivery import delivery_attempt
from finops.alerts.models import ChannelKind, Delivery, DeliveryStatus
from finops.alerts.signing import webhook_secret_new
from tests.alerts.receivers import (
    ALERT_URL,
    RULE_NAME,
    SUBJECT,
    Answer,
    SignatureInvalid,
    SmtpServer,
    WebhookReceiver,
    delivery_make,
    standard_webhook_verify,
)
from tests.core.conftest import free_port
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory(slug="support")


@pytest.fixture
def secret() -> str:
    return webhook_secret_new()


@pytest.fixture
def receiver(secret):
    with WebhookReceiver(secret=secret) as receiver:
        yield receiver


def test_a_signed_webhook_is_verified_by_an_independent_receiver_and_recorded_as_sent(team, secret, receiver):
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)

    outcome = delivery_attempt(delivery_id=delivery.pk, now=now)

    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    assert received.verify_error is None
    assert received.path == "/hooks/finops"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == delivery.message_id
    assert received.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert json.loads(received.body) == delivery.payload
    assert json.loads(received.body)["rule"]["name"] == RULE_NAME  # the UTF-8 dash survived, signed
    assert (
        Webhook(secret).verify(received.body, received.headers) == delivery.payload
    )  # the reference library
    assert outcome.status == DeliveryStatus.SENT
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        DeliveryStatus.SENT,
        1,
        204,
        "",
    )
    assert delivery.sent_at == now and delivery.next_attempt_at is None
    delivery.channel.refresh_from_db()
    assert delivery.channel.last_success_at == now
    assert delivery.channel.consecutive_failures == 0


def test_the_verifier_refuses_another_secret_a_changed_body_and_a_stale_timestamp(team, secret, receiver):
    # given a channel whose secret is not the one the receiver holds
    now = timezone.now()
    delivery = delivery_make(
        team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=webhook_secret_new(), now=now
    )

    delivery_attempt(delivery_id=delivery.pk, now=now)

    # then the receiver refused it, and the delivery says so and will retry
    assert receiver.requests[0].verify_error == "no v1 signature matches"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_status_code == 401
    assert delivery.last_error == "HTTP 401: signature: no v1 signature matches"

    # and the same verifier refuses a changed body or an old timestamp of an otherwise good request
    received = receiver.requests[0]
    headers = dict(received.headers)
    with pytest.raises(SignatureInvalid, match="no v1"):
        standard_webhook_verify(secret=secret, headers=headers, body=received.body, now=time.time())
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(received.body, headers)
    stale = int(headers["webhook-timestamp"]) + 301
    with pytest.raises(SignatureInvalid, match="more than 300 s"):
        standard_webhook_verify(secret=secret, headers=headers, body=received.body, now=stale)


def test_a_receiver_slower_than_the_timeout_is_a_failure_to_retry(team, secret, receiver, settings):
    settings.FINOPS_ALERT_HTTP_TIMEOUT_SECONDS = 1
    receiver.answers.append(Answer(status=204, delay=10))
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)

    started = time.monotonic()
    outcome = delivery_attempt(delivery_id=delivery.pk, now=now)
    waited = time.monotonic() - started

    assert 1 <= waited < 5  # gave up at the timeout, not at the receiver's 10 s
    assert outcome.status == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert delivery.last_error == "no answer within 1 s (connect and read)"
    assert delivery.last_status_code is None
    assert delivery.next_attempt_at == now + timedelta(seconds=30)


def test_a_redirect_is_not_followed_and_names_where_it_pointed(team, secret, receiver):
    moved_to = receiver.url.replace("/hooks/finops", "/moved")
    receiver.answers.append(Answer(status=301, headers={"location": moved_to}))
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)

    delivery_attempt(delivery_id=delivery.pk, now=now)

    assert [request.path for request in receiver.requests] == ["/hooks/finops"]  # /moved never asked
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_status_code == 301
    assert delivery.last_error == f"HTTP 301: redirect to {moved_to} not followed"


def test_an_error_answer_keeps_only_the_start_of_its_body(team, secret, receiver):
    receiver.answers.append(Answer(status=500, body=b"x" * 200_000))
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=receiver.url, secret=secret, now=now)

    delivery_attempt(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert delivery.last_status_code == 500
    assert delivery.last_error == "HTTP 500: " + "x" * 1000 + "…"


def test_nothing_listening_is_a_connection_error(team, secret):
    now = timezone.now()
    target = f"http://127.0.0.1:{free_port()}/hook"
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=target, secret=secret, now=now)

    delivery_attempt(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("ConnectionRefusedError")


@pytest.mark.parametrize(
    ("target", "secret", "error"),
    [
        (
            "ftp://127.0.0.1/hook",
            webhook_secret_new(),
            "the target is not an http(s) URL with a host (scheme 'ftp')",
        ),
        (
            "http://127.0.0.1:1/hook",
            "not-a-secret",
            "the channel's secret is unusable: a webhook secret starts",
        ),
    ],
)
def test_an_unusable_channel_gives_up_at_once(team, target, secret, error):
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.WEBHOOK, target=target, secret=secret, now=now)

    delivery_attempt(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error.startswith(error)
    delivery.channel.refresh_from_db()
    assert delivery.channel.consecutive_failures == 1


def test_slack_gets_text_and_blocks_with_the_numbers_and_the_link(team):
    now = timezone.now()
    with WebhookReceiver() as slack:
        delivery = delivery_make(team=team, kind=ChannelKind.SLACK, target=slack.url, now=now)
        delivery_attempt(delivery_id=delivery.pk, now=now)

    body = json.loads(slack.requests[0].body)
    link = f"{ALERT_URL}{delivery.alert_id}"
    assert body["text"] == f"[finops] FIRING: {RULE_NAME} — {SUBJECT}: cost_usd 25.31 > 25 {link}"
    [block] = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"].splitlines() == [
        f"*FIRING*: *{RULE_NAME}*",
        f"Subject: `{SUBJECT}`",
        "Value: cost_usd 25.31 &gt; 25",
        "support/refund-bot spent $25.31 in the last 24 hours",
        f"<{link}|Open the alert>",
    ]
    assert "webhook-signature" not in slack.requests[0].headers
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "invalid_payload"), (404, "no_service"), (410, "channel_is_archived")]
)
def test_slack_error_bodies_are_kept_as_the_error(team, status, reason):
    now = timezone.now()
    with WebhookReceiver() as slack:
        slack.answers.append(
            Answer(status=status, body=reason.encode(), headers={"content-type": "text/html"})
        )
        delivery = delivery_make(team=team, kind=ChannelKind.SLACK, target=slack.url, now=now)
        delivery_attempt(delivery_id=delivery.pk, now=now)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == (
        DeliveryStatus.PENDING,
        status,
        f"HTTP {status}: {reason}",
    )
    delivery.channel.refresh_from_db()
    assert delivery.channel.last_error == f"HTTP {status}: {reason}"


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.DEFAULT_FROM_EMAIL = "finops <alerts@finops.example>"
        yield server


def subject_decoded(envelope) -> str:
    """The Subject as RFC 2047 decodes it (Django folds a non-ASCII subject onto encoded words)."""
    raw = email.message_from_bytes(envelope.original_content)["Subject"]
    return str(make_header(decode_header(raw)))


def test_email_goes_through_a_real_smtp_server_with_the_numbers_and_the_link(team, smtp):
    now = timezone.now()
    delivery = delivery_make(
        team=team, kind=ChannelKind.EMAIL, target="oncall@example.com, sre@example.com", now=now
    )

    outcome = delivery_attempt(delivery_id=delivery.pk, now=now)

    assert outcome.status == DeliveryStatus.SENT
    [envelope] = smtp.recorder.envelopes
    assert envelope.mail_from == "alerts@finops.example"
    assert envelope.rcpt_tos == ["oncall@example.com", "sre@example.com"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert subject_decoded(envelope) == f"[finops] FIRING: {RULE_NAME} — {SUBJECT}"
    assert message["From"] == "finops <alerts@finops.example>"
    assert message["To"] == "oncall@example.com, sre@example.com"
    assert message["Message-ID"] == f"<{delivery.message_id}@finops.example>"
    assert message.get_content().replace("\r\n", "\n") == (
        f"FIRING: {RULE_NAME}\n"
        "\n"
        f"Subject:   {SUBJECT}\n"
        "Value:     25.31 (cost_usd)\n"
        "Threshold: greater than 25\n"
        "\n"
        "support/refund-bot spent $25.31 in the last 24 hours\n"
        "\n"
        f"Started:   {now.isoformat()}\n"
        f"Fired:     {now.isoformat()}\n"
        "\n"
        f"Open the alert: {ALERT_URL}{delivery.alert_id}\n"
        "\n"
        "--\n"
        f"finops alert notification {delivery.message_id}\n"
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sent_at) == (DeliveryStatus.SENT, 1, now)


def test_a_refused_recipient_is_recorded_with_the_servers_reply(team, smtp):
    smtp.recorder.refuse = True
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.EMAIL, target="nobody@example.com", now=now)

    delivery_attempt(delivery_id=delivery.pk, now=now)

    assert smtp.recorder.envelopes == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error == (
        "SMTP recipients refused: nobody@example.com: 550 5.1.1 <nobody@example.com>: mailbox unavailable"
    )


def test_a_resolved_alert_says_resolved(team, smtp):
    now = timezone.now()
    delivery = delivery_make(team=team, kind=ChannelKind.EMAIL, target="oncall@example.com", now=now)
    Delivery.objects.filter(pk=delivery.pk).update(
        event="alert.resolved", payload={**delivery.payload, "type": "alert.resolved"}
    )

    delivery_attempt(delivery_id=delivery.pk, now=now)

    assert subject_decoded(smtp.recorder.envelopes[0]) == f"[finops] RESOLVED: {RULE_NAME} — {SUBJECT}"
