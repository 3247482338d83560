from django.urls import path

from dashboard import guardrails, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("guardrails/", guardrails.guardrails, name="guardrails"),
    path(
        "guardrails/allowances/<int:allowance_id>/delete",
        guardrails.allowance_remove,
        name="allowance-remove",
    ),
]
