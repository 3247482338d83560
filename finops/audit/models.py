"""The audit log: who changed which setting, when, and what it was before and after (SPEC.md,
"Guardrails": every change is in an audit log). Generic over the object changed, so allowances, kill
switches and alert rules all write here."""

from __future__ import annotations

from django.db import models

from finops.accounts.models import ApiToken, Team, User
from finops.accounts.querysets import TeamOwnedQuerySet


class AuditAction(models.TextChoices):
    CREATE = "create", "create"
    UPDATE = "update", "update"
    DELETE = "delete", "delete"


class AuditQuerySet(TeamOwnedQuerySet):
    """Seen like the team's data (entries of no team: by those who see every team); changed by no one.
    The log is only appended to, by audit_record, never edited or deleted through `restrict`: a
    writer of the team's data (pm, ml, an `ingest` token) must not rewrite who changed what."""

    def _restricted(self, principal, action: str):
        if action == "change":
            return self.none()
        return super()._restricted(principal, action)


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    who = models.CharField(max_length=256, help_text="the person or token, as named when it happened")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["team", "-at"], name="audit_team_at_idx")]

    def __str__(self) -> str:
        return f"{self.who} {self.action} {self.object_type} {self.object_id}"
