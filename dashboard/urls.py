from django.urls import path

from dashboard import agents, guardrails, tasks, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("guardrails/", guardrails.guardrails, name="guardrails"),
    path("tasks/<int:task_pk>/", tasks.task_trace_page, name="task"),
    path("agents/<int:agent_pk>/", agents.agent_page, name="agent"),
    path(
        "guardrails/allowances/<int:allowance_id>/delete",
        guardrails.allowance_remove,
        name="allowance-remove",
    ),
]
