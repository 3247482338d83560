"""Provider connectors and the statement lines they pull (SPEC.md, "Other sources the product reads").

Statement lines are what the provider says was used and charged, per bucket. They are kept apart from
the per-call ledger: reconciliation compares the two, so they must never be mixed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from finops.accounts.querysets import OrgDataQuerySet

MONEY = {"max_digits": 28, "decimal_places": 12}


class ConnectorKind(models.TextChoices):
    OPENAI_USAGE = "openai_usage", "OpenAI usage (organization Usage API, completions)"
    OPENAI_COSTS = "openai_costs", "OpenAI costs (organization Costs API)"
    ANTHROPIC_USAGE = "anthropic_usage", "Anthropic usage (Admin API messages usage report)"
    ANTHROPIC_COST = "anthropic_cost", "Anthropic cost (Admin API cost report)"


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"


PROVIDER_OF_KIND: dict[str, str] = {
    ConnectorKind.OPENAI_USAGE: Provider.OPENAI,
    ConnectorKind.OPENAI_COSTS: Provider.OPENAI,
    ConnectorKind.ANTHROPIC_USAGE: Provider.ANTHROPIC,
    ConnectorKind.ANTHROPIC_COST: Provider.ANTHROPIC,
}

DEFAULT_BASE_URL: dict[str, str] = {
    Provider.OPENAI: "https://api.openai.com",
    Provider.ANTHROPIC: "https://api.anthropic.com",
}


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped (another pull of this connector was running)"


class Connector(models.Model):
    """One pull from one provider API with one admin key. The key is stored encrypted, never shown."""

    kind = models.CharField(max_length=32, choices=ConnectorKind.choices)
    name = models.CharField(max_length=128)
    credentials_encrypted = models.TextField(help_text="Fernet token of the JSON credentials")
    base_url = models.URLField(blank=True, help_text="empty: the provider's own API; set for a proxy")
    enabled = models.BooleanField(default=True)
    cursor = models.DateTimeField(help_text="the next pull starts at this instant")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, choices=RunStatus.choices, blank=True)
    last_error = models.TextField(blank=True)
    last_rows = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def provider(self) -> str:
        return PROVIDER_OF_KIND[self.kind]

    @property
    def api_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URL[self.provider]).rstrip("/")

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.pk}"


class ConnectorRun(models.Model):
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0, help_text="statement lines written or updated")
    pages = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.connector_id}: {self.status}"


class StatementKind(models.TextChoices):
    USAGE = "usage", "usage (quantities)"
    COST = "cost", "cost (amounts)"


NATURAL_KEY_FIELDS: tuple[str, ...] = (
    "source",
    "kind",
    "period_start",
    "model",
    "token_type",
    "line_item",
    "project_id",
    "api_key_id",
    "workspace_id",
    "batch",
    "service_tier",
    "context_window",
)


class StatementLine(models.Model):
    """One provider-reported quantity or amount for one bucket and one combination of dimensions.

    Dimensions the provider did not report are "" (never NULL), so the natural key is a plain unique
    constraint: re-pulling a bucket updates its lines instead of adding new ones.
    """

    source = models.CharField(max_length=64, help_text="connector kind:id, or the file the line came from")
    connector = models.ForeignKey(
        Connector, null=True, blank=True, on_delete=models.SET_NULL, related_name="statement_lines"
    )
    provider = models.CharField(max_length=32, choices=Provider.choices)
    kind = models.CharField(max_length=8, choices=StatementKind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    model = models.CharField(max_length=128, blank=True)
    token_type = models.CharField(max_length=32, blank=True, help_text="one of SPEC's six token types")
    line_item = models.CharField(
        max_length=255, blank=True, help_text="the provider's own line item or a non-token quantity"
    )
    project_id = models.CharField(max_length=128, blank=True)
    api_key_id = models.CharField(max_length=128, blank=True)
    workspace_id = models.CharField(max_length=128, blank=True)
    batch = models.BooleanField(default=False)
    service_tier = models.CharField(max_length=32, blank=True)
    context_window = models.CharField(max_length=32, blank=True)
    quantity = models.BigIntegerField(null=True, blank=True, help_text="tokens or requests; empty for costs")
    amount = models.DecimalField(**MONEY, null=True, blank=True, help_text="in currency units, not cents")
    currency = models.CharField(max_length=3, blank=True)
    pulled_at = models.DateTimeField()

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["period_start", "provider", "model", "token_type", "line_item", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=list(NATURAL_KEY_FIELDS),
                name="statement_line_natural_key",
            )
        ]
        indexes = [models.Index(fields=["provider", "period_start"], name="statement_provider_period")]

    def __str__(self) -> str:
        what = self.token_type or self.line_item
        return f"{self.provider} {self.period_start:%Y-%m-%d} {self.model} {what}"


class InvoiceMapping(models.Model):
    """How a provider's own CSV export reads (ingest/connectors/invoice_csv.py InvoiceMappingSpec), saved
    under a name so the next file with the same header imports in one step. Organisation billing data:
    made and changed by the admin and finops roles, each change audited."""

    name = models.CharField(max_length=128, unique=True)
    header = models.JSONField(default=list, help_text="the columns of the file it was made on")
    spec = models.JSONField(help_text="InvoiceMappingSpec.as_dict()")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InvoiceImportStatus(models.TextChoices):
    UPLOADED = "uploaded", "uploaded (not imported yet)"
    DONE = "done", "imported"
    FAILED = "failed", "failed"


class InvoiceImport(models.Model):
    """One uploaded invoice file: kept on the server between preview, mapping and import, then what its
    last import did (counts and every skipped row with its line number and reasons)."""

    file_name = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=1024)
    mapping = models.ForeignKey(
        InvoiceMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="imports"
    )
    source = models.CharField(max_length=64, blank=True, help_text="invoice:<file name>")
    status = models.CharField(
        max_length=16, choices=InvoiceImportStatus.choices, default=InvoiceImportStatus.UPLOADED
    )
    outcome = models.JSONField(default=dict, blank=True, help_text="counts, totals and skipped rows")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    imported_at = models.DateTimeField(null=True, blank=True)

    objects = OrgDataQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"invoice import {self.pk} of {self.file_name} ({self.status})"
