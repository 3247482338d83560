"""Admin views of connectors, their runs and statement lines. The encrypted credentials never show."""

from django.contrib import admin

from ingest.connectors.models import Connector, ConnectorRun, StatementLine


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "cursor", "last_run_at", "last_status", "last_rows"]
    exclude = ["credentials_encrypted"]  # set through the connector page or the API, which encrypt it
    readonly_fields = ["kind", "last_run_at", "last_status", "last_error", "last_rows", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # creating one needs its key encrypted: the connector page or the API do that


@admin.register(ConnectorRun)
class ConnectorRunAdmin(admin.ModelAdmin):
    list_display = ["connector", "status", "queued_at", "started_at", "finished_at", "pages", "rows"]
    list_filter = ["status"]
    list_select_related = ["connector"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StatementLine)
class StatementLineAdmin(admin.ModelAdmin):
    list_display = [
        "period_start",
        "provider",
        "kind",
        "model",
        "token_type",
        "line_item",
        "quantity",
        "amount",
    ]
    list_filter = ["provider", "kind", "token_type"]
    search_fields = ["model", "line_item", "source"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # statement lines are the provider's word: only a pull changes them
