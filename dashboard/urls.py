from django.urls import path

from dashboard import (
    agents,
    alerts,
    audit,
    breakdown,
    caching,
    forecast,
    guardrails,
    home,
    model_usage,
    months,
    prices,
    reconciliation,
    tasks,
    views,
)

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("home/", home.home, name="home"),
    path("guardrails/", guardrails.guardrails, name="guardrails"),
    path("tasks/<int:task_pk>/", tasks.task_trace_page, name="task"),
    path("agents/<int:agent_pk>/", agents.agent_page, name="agent"),
    path("guardrails/allowances/<int:allowance_id>/", guardrails.allowance_edit, name="allowance-edit"),
    path(
        "guardrails/allowances/<int:allowance_id>/delete",
        guardrails.allowance_remove,
        name="allowance-remove",
    ),
    path("alerts/", alerts.alerts, name="alerts"),
    # the `url` of webhook payloads (SPEC.md, Alerts): keep this path
    path("alerts/<int:alert_id>/", alerts.alert_detail, name="alert-detail"),
    path("alerts/<int:alert_id>/ack", alerts.alert_acknowledge, name="alert-ack"),
    path("alerts/silences/", alerts.silence_create, name="silence-create"),
    path("alerts/silences/<int:silence_id>/expire", alerts.silence_expire, name="silence-expire"),
    path("alerts/rules/", alerts.rules, name="rules"),
    path("alerts/rules/<int:rule_id>/", alerts.rule_edit, name="rule-edit"),
    path("alerts/rules/<int:rule_id>/enabled", alerts.rule_enabled, name="rule-enabled"),
    path("alerts/rules/<int:rule_id>/delete", alerts.rule_remove, name="rule-remove"),
    path("alerts/channels/", alerts.channel_create, name="channel-create"),
    path("alerts/channels/<int:channel_id>/delete", alerts.channel_remove, name="channel-remove"),
    path("audit/", audit.audit, name="audit"),
    path("breakdown/", breakdown.breakdown_page, name="breakdown"),
    path("forecast/", forecast.forecast_page, name="forecast"),
    path("models/", model_usage.models_page, name="models"),
    path("caching/", caching.caching_page, name="caching"),
    path("prices/", prices.prices_page, name="prices"),
    path("prices/runs/", prices.reprice_runs_page, name="reprice-runs"),
    path("prices/runs/<int:run_id>/", prices.reprice_run_page, name="reprice-run"),
    path("bills/reconciliation/", reconciliation.reconciliation_page, name="reconciliation"),
    path("months/", months.months_page, name="months"),
]
