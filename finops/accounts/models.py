"""People, teams, roles and API tokens (SPEC.md, "Who uses it and for what")."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models

from finops.accounts.querysets import AdministeredQuerySet, TeamOwnedQuerySet


class OrgRole(models.TextChoices):
    NONE = "", "none (team roles only)"
    ADMIN = "admin", "admin"
    FINOPS = "finops", "finops"


class TeamRole(models.TextChoices):
    SRE = "sre", "sre"
    TECH_LEAD = "tech_lead", "tech lead"
    PM = "pm", "pm"
    ML = "ml", "ml"
    VIEWER = "viewer", "viewer"


class TokenScope(models.TextChoices):
    INGEST = "ingest", "ingest: send events and task outcomes"
    READ = "read", "read: KPIs and reports"
    MANAGE = "manage", "manage: allowances and kill switches of the token's team (what an sre may do)"


class User(AbstractUser):
    org_role = models.CharField(max_length=16, choices=OrgRole.choices, default=OrgRole.NONE, blank=True)

    def save(self, *args, **kwargs):
        # org roles work in the Django admin (prices, discounts, users), which needs is_staff
        if self.org_role in {OrgRole.ADMIN, OrgRole.FINOPS}:
            self.is_staff = True
        super().save(*args, **kwargs)

    @property
    def sees_every_team(self) -> bool:
        return self.is_superuser or self.org_role in {OrgRole.ADMIN, OrgRole.FINOPS}


class TeamQuerySet(TeamOwnedQuerySet):
    """The teams a user or API token may see ("view") or write data for ("change")."""

    team_field = "pk"


class Team(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    # set by the finops role (SPEC.md, roles: "team budgets"); the Forecast page holds spend against it
    monthly_budget_usd = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="$ per calendar month (in FINOPS_TIME_ZONE); empty: no budget",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TeamRole.choices, default=TeamRole.VIEWER)

    objects = AdministeredQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_user_team_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the secret is shown once, at creation."""

    name = models.CharField(max_length=128)
    prefix = models.CharField(max_length=16, db_index=True, help_text="first characters, to recognise it")
    digest = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=16, choices=TokenScope.choices))
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, help_text="empty: org-wide token"
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = AdministeredQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_authenticated(self) -> bool:  # lets DRF treat an authenticated token like a user
        return True


class ThrottleKind(models.TextChoices):
    LOGIN_ACCOUNT = "login-account", "failed logins of one account"
    LOGIN_ADDRESS = "login-address", "failed logins from one client address"
    TOKEN_ADDRESS = "token-address", "unknown API tokens from one client address"


class AuthFailureCounter(models.Model):
    """Failures of one kind and key (a username or a client address) in the window that began with the
    first of them. Kept in PostgreSQL so every web process and worker counts together, with no Redis."""

    kind = models.CharField(max_length=16, choices=ThrottleKind.choices)
    key = models.CharField(max_length=255)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="authfailurecounter_kind_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.failures} since {self.window_started_at:%Y-%m-%d %H:%M}"
