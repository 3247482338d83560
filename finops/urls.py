from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from finops.accounts.api import WhoAmIView, whoami_fast
from finops.alerts.api import (
    AlertChannelViewSet,
    AlertRuleViewSet,
    AlertViewSet,
    DeliveryViewSet,
    SilenceViewSet,
)
from finops.api import fast
from finops.audit.api import AuditEntryViewSet
from finops.bills.api import ReconciliationLineViewSet, ReconciliationView
from finops.bills.chargeback_api import ChargebackView, MonthCloseView, MonthListView, MonthReopenView
from finops.guardrails.api import AllowanceViewSet, GuardCheckView, guard_check_fast
from finops.kpis.api import KpisView
from finops.ledger.api import AgentViewSet, TeamViewSet
from finops.modeltiers.api import ModelTierViewSet, ModelUsageView
from finops.pricing.api import DiscountViewSet, PriceOverrideViewSet, RepriceRunViewSet
from ingest.api import EventsView, TasksView

router = SimpleRouter(trailing_slash=False)
router.register("teams", TeamViewSet, basename="team")
router.register("agents", AgentViewSet, basename="agent")
router.register("allowances", AllowanceViewSet, basename="allowance")
router.register("audit", AuditEntryViewSet, basename="audit")
router.register("alert-channels", AlertChannelViewSet, basename="alert-channel")
router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
router.register("alerts", AlertViewSet, basename="alert")
router.register("alert-silences", SilenceViewSet, basename="alert-silence")
router.register("alert-deliveries", DeliveryViewSet, basename="alert-delivery")
router.register("model-tiers", ModelTierViewSet, basename="model-tier")
router.register("reconciliation/lines", ReconciliationLineViewSet, basename="reconciliation-line")
router.register("price-overrides", PriceOverrideViewSet, basename="price-override")
router.register("discounts", DiscountViewSet, basename="discount")
router.register("reprice-runs", RepriceRunViewSet, basename="reprice-run")

api_v1 = [
    # first: the resolver tries patterns in order, and an agent asks the guard check before every call
    path("guard/check", fast.with_fast_path(GuardCheckView.as_view(), guard_check_fast), name="guard-check"),
    path("whoami", fast.with_fast_path(WhoAmIView.as_view(), whoami_fast), name="whoami"),
    *router.urls,
    path("", include("ingest.api_urls")),
    path("", include("ingest.connectors.api_urls")),
    path("events", EventsView.as_view(), name="events"),
    path("tasks", TasksView.as_view(), name="tasks"),
    path("kpis", KpisView.as_view(), name="kpis"),
    path("models/usage", ModelUsageView.as_view(), name="model-usage"),
    path("months", MonthListView.as_view(), name="months"),
    path("months/<str:month>/close", MonthCloseView.as_view(), name="month-close"),
    path("months/<str:month>/reopen", MonthReopenView.as_view(), name="month-reopen"),
    path("chargeback", ChargebackView.as_view(), name="chargeback"),
    path("reconciliation", ReconciliationView.as_view(), name="reconciliation"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # the split view loads its set-up script from a URL: no inline script, so it works under our CSP
    path(
        "docs",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema"),
        name="docs",
    ),
]

handler404 = "finops.api.exceptions.page_not_found"

urlpatterns = [
    path("api/v1/", include((api_v1, "api"))),
    path("v1/", include("ingest.otlp.urls")),  # OTLP/HTTP: POST /v1/traces
    path("ingest/", include("ingest.urls")),
    path("connectors/", include("ingest.connectors.urls")),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
]
