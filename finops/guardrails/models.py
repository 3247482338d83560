"""Allowances, their counters per window, and the reservations of allowed guard checks (SPEC.md,
"Guardrails").

The guard check reads no calls table: it reads `AllowanceUsage`, which the bulk writer keeps in the same
transaction as the calls it writes, and what the reservations hold, kept by the database itself: triggers
on guardrails_reservation (migrations 0003 and 0005) add a `ReservedTotal` row in the transaction of every
insert, release and delete, whoever writes the rows, so the totals cannot drift from the rows. A
reservation is released (`released_at`) by the next guard check of its allowance once it is settled or
expired: a check costs the same with 15 or 150,000 reservations outstanding, instead of summing them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from finops.accounts.models import Team
from finops.accounts.querysets import TeamOwnedQuerySet
from finops.ledger.models import MONEY, Agent


class AllowanceWindow(models.TextChoices):
    HOUR = "hour", "hour"
    DAY = "day", "day"
    WEEK = "week", "week (from Monday)"
    MONTH = "month", "month"


class AllowanceAction(models.TextChoices):
    WARN = "warn", "warn: answer warn, never deny"
    THROTTLE = "throttle", "throttle: deny calls of tasks that have not started in this window"
    DENY = "deny", "deny: deny every call past the limit"


class GuardedQuerySet(TeamOwnedQuerySet):
    """Seen by whoever sees the team; changed by its sre and tech_lead, admin and finops everywhere,
    and `manage` tokens for their team (guarding_team_ids)."""

    def _restricted(self, principal, action: str):
        if action == "view":
            return super()._restricted(principal, action)
        from finops.accounts.selectors import guarding_team_ids

        team_ids = guarding_team_ids(principal=principal)
        return self.all() if team_ids is None else self.filter(**{f"{self.team_field}__in": team_ids})


class Allowance(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="allowances")
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="allowances",
        help_text="empty: the whole team",
    )
    window = models.CharField(max_length=8, choices=AllowanceWindow.choices)
    limit_tokens = models.BigIntegerField(null=True, blank=True, help_text="all six token types")
    limit_usd = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    warn_at = models.FloatField(default=0.8, help_text="fraction of a limit at which to warn")
    action = models.CharField(max_length=8, choices=AllowanceAction.choices, default=AllowanceAction.DENY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GuardedQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(limit_tokens__isnull=False) | Q(limit_usd__isnull=False),
                name="allowance_has_a_limit",
            ),
            models.CheckConstraint(
                condition=(Q(limit_tokens__isnull=True) | Q(limit_tokens__gte=0))
                & (Q(limit_usd__isnull=True) | Q(limit_usd__gte=0))
                & Q(warn_at__gte=0, warn_at__lte=1),
                name="allowance_limits_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"allowance {self.pk} ({self.scope_name}, {self.window})"

    @property
    def scope_name(self) -> str:
        return f"{self.team.slug}/{self.agent.name}" if self.agent_id else self.team.slug


class UsageQuerySet(TeamOwnedQuerySet):
    team_field = "allowance__team"


class AllowanceUsage(models.Model):
    """What the calls of one allowance's window used, kept by the writer with the calls."""

    allowance = models.ForeignKey(Allowance, on_delete=models.CASCADE, related_name="usage")
    window_start = models.DateTimeField()
    used_tokens = models.BigIntegerField(default=0)
    used_usd = models.DecimalField(**MONEY, default=Decimal(0))
    unpriced_calls = models.IntegerField(default=0, help_text="calls whose tokens count but cost is unknown")
    calls = models.IntegerField(default=0)

    objects = UsageQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["allowance", "window_start"], name="allowance_usage_window_unique"
            )
        ]


class Reservation(models.Model):
    """One allowed guard check's estimate held against one allowance: a check that counted against
    three allowances writes three rows with one `reservation_id`. Settled by the usage event carrying
    that id (in the writer's transaction), else it stops counting at `expires_at`."""

    reservation_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    allowance = models.ForeignKey(Allowance, on_delete=models.CASCADE, related_name="+", db_index=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    agent = models.ForeignKey(Agent, null=True, on_delete=models.CASCADE, related_name="+", db_index=False)
    task_id = models.CharField(max_length=256, null=True, blank=True, db_collation="C")
    estimated_tokens = models.BigIntegerField(default=0)
    estimated_usd = models.DecimalField(**MONEY, default=Decimal(0))
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(
        null=True, blank=True, help_text="when it stopped counting in its allowance's reserved totals"
    )

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        indexes = [
            # what a guard check releases: the expired, and the settled, of its allowances
            models.Index(
                fields=["allowance", "expires_at"],
                condition=Q(released_at__isnull=True),
                name="reservation_held_idx",
            ),
            models.Index(
                fields=["allowance"],
                condition=Q(released_at__isnull=True, settled_at__isnull=False),
                name="reservation_settled_held_idx",
            ),
        ]


class ReservedTotal(models.Model):
    """What an allowance's unreleased reservations hold, after change `seq`: rows are added, never
    updated, and the highest `seq` is the current total (migration 0005 says why). Written only by the
    database's triggers on guardrails_reservation, under the allowance's row lock; the purge keeps each
    allowance's latest row."""

    pk = models.CompositePrimaryKey("allowance_id", "seq")
    allowance_id = (
        models.BigIntegerField()
    )  # no foreign key: the rows of a deleted allowance go with the purge
    seq = models.BigIntegerField()
    tokens = models.DecimalField(max_digits=40, decimal_places=0)
    usd = models.DecimalField(max_digits=40, decimal_places=12)
