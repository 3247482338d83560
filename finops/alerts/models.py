"""Alert channels, rules, the alerts they raise, silences and deliveries (SPEC.md, "Alerts").

A rule is evaluated every minute (beat, `finops alerts evaluate`) from rollups, never the calls table.
Each (rule, subject) has at most one open alert (pending or firing); a resolved alert stays as history
and the next breach opens a new one. Every notification of an alert to a channel is a `Delivery`,
retried with backoff until sent or given up, so a failing channel is visible."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q

from finops.accounts.models import Team
from finops.guardrails.models import GuardedQuerySet
from finops.ledger.models import Agent


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "webhook (Standard Webhooks signature)"
    SLACK = "slack", "Slack incoming webhook"
    EMAIL = "email", "email"


class AlertChannel(models.Model):
    """Where alerts go. `team` null: an organisation channel (seen and changed by org admins and the
    finops role). `secret` signs webhook deliveries and is never shown after creation."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=128, blank=True, default="")
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    target = models.CharField(max_length=2048, help_text="URL (webhook, slack) or address (email)")
    secret = models.CharField(max_length=256, blank=True, default="")
    # the channel's health, from its deliveries: a failing channel is shown on the alerts page
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    consecutive_failures = models.IntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "id"]

    def __str__(self) -> str:
        return f"{self.kind} channel {self.pk} ({self.label})"

    @property
    def target_masked(self) -> str:
        """The target as shown to whoever may not change the channel. A Slack or webhook URL is a
        secret (whoever holds it can post to the channel, as finops), so only its scheme, host and
        last four characters are shown, enough to tell two channels apart; an email address is not."""
        if self.kind == ChannelKind.EMAIL:
            return self.target
        try:
            parts = urlsplit(self.target)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # not a URL a channel accepts; show nothing of it
            return "…"
        if parts.path in ("", "/") and not parts.query and not parts.fragment and not parts.username:
            return self.target  # nothing in it but where it goes
        return f"{parts.scheme}://{host}{port}/…{self.target[-4:]}"

    @property
    def label(self) -> str:
        """How pages and logs name the channel to anyone: its name, else its masked target."""
        return self.name or self.target_masked


class RuleKind(models.TextChoices):
    THRESHOLD = "threshold", "threshold: a KPI, spend or tokens over a window"
    FORECAST = "forecast", "forecast: projected month-end spend over a value"
    ANOMALY = "anomaly", "anomaly: spend over the window above value x the trailing baseline"
    RUNAWAY_TASK = "runaway_task", "runaway task: a running task past value dollars or steps"
    CACHE_COLLAPSE = "cache_collapse", "cache collapse: newest prompt version's hit rate dropped"
    ALLOWANCE = "allowance", "allowance: an allowance past its warn_at"


class RuleOp(models.TextChoices):
    GT = "gt", "greater than"
    LT = "lt", "less than"


class RuleWindow(models.TextChoices):
    MIN15 = "15m", "last 15 minutes"
    HOUR = "1h", "last hour"
    DAY = "1d", "last 24 hours"
    WEEK = "7d", "last 7 days"
    MONTH = "month", "this calendar month"


class AlertRule(models.Model):
    name = models.CharField(max_length=128)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="empty: every team"
    )
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="empty: every agent",
    )
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    metric = models.CharField(max_length=64, blank=True, default="")
    op = models.CharField(max_length=2, choices=RuleOp.choices, default=RuleOp.GT)
    value = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    window = models.CharField(max_length=8, choices=RuleWindow.choices, blank=True, default="")
    for_minutes = models.PositiveIntegerField(default=0)
    repeat_minutes = models.PositiveIntegerField(default=240)
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "name", "id"]

    def __str__(self) -> str:
        return f"rule {self.pk} ({self.name})"


class AlertState(models.TextChoices):
    PENDING = "pending", "pending"
    FIRING = "firing", "firing"
    RESOLVED = "resolved", "resolved"


class Alert(models.Model):
    """One breach of one rule for one subject: the team, agent or task it is about. `subject` is a
    stable key (e.g. "agent:support/refund-bot", "task:support/run-42"); `team` is the subject's team
    (for scoping; the rule's team when it has one)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=512)
    state = models.CharField(max_length=8, choices=AlertState.choices)
    value = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    threshold = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    summary = models.TextField(blank=True, default="", help_text="what held, in words")
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField()

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=~Q(state="resolved"),
                name="alert_one_open_per_rule_subject",
            )
        ]
        indexes = [models.Index(fields=["team", "-started_at"], name="alert_team_started_idx")]

    def __str__(self) -> str:
        return f"alert {self.pk} ({self.rule_id}, {self.subject}, {self.state})"


class Silence(models.Model):
    """While it lasts, alerts of its scope still change state but notify no one. Scope: a rule, or a
    team (and optionally one of its agents); team null and rule null: everything (org admins, finops)."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=512, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["-ends_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="silence_ends_after_start"
            )
        ]


class DeliveryEvent(models.TextChoices):
    FIRING = "alert.firing", "alert.firing"
    RESOLVED = "alert.resolved", "alert.resolved"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending (will retry)"
    SENT = "sent", "sent"
    FAILED = "failed", "failed (gave up)"


def message_id_new() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Delivery(models.Model):
    """One notification of one alert to one channel. `message_id` is the webhook-id: the same on every
    retry, so a receiver can deduplicate. Retried with exponential backoff until sent or out of tries."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=16, choices=DeliveryEvent.choices)
    message_id = models.CharField(max_length=64, default=message_id_new, unique=True)
    payload = models.JSONField()
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_due_idx")
        ]
