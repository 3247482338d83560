"""Admin for agents (their settings and targets) and tasks (read-only).

Who may change which agent setting follows SPEC.md's roles: admins everything; tech leads the agent
settings and kill switches; SREs the kill switches; PMs the cost SLO and ideal steps. Everyone sees only
the agents and tasks of the teams they may see.
"""

from __future__ import annotations

from django.contrib import admin

from finops.accounts.admin import VisibleTeamListFilter, VisibleTeamsOnly
from finops.accounts.models import Membership, OrgRole
from finops.ledger.models import Agent, Task
from finops.ledger.services import AGENT_SETTING_ROLES

TARGET_FIELDS = ("target_cache_hit_rate", "target_token_efficiency", "target_step_inflation")
KILL_SWITCH_FIELDS = ("max_steps", "max_cost_usd")
AGENT_SETTING_FIELDS = ("cost_slo_usd", "ideal_steps", *KILL_SWITCH_FIELDS, *TARGET_FIELDS)
# the one rule of who may change what (finops.ledger.services), turned around: role → fields
EDITABLE_AGENT_FIELDS_BY_TEAM_ROLE: dict[str, frozenset[str]] = {
    role: frozenset(name for name, roles in AGENT_SETTING_ROLES.items() if role in roles)
    for role in set().union(*AGENT_SETTING_ROLES.values())
}


def editable_agent_fields(*, user, agent: Agent | None) -> frozenset[str]:
    """The agent settings this user may change, on this agent (None: on any agent they can see)."""
    if not user.is_active:
        return frozenset()
    if user.is_superuser or user.org_role == OrgRole.ADMIN:
        return frozenset(AGENT_SETTING_FIELDS)
    memberships = Membership.objects.filter(user=user)
    if agent is not None:
        memberships = memberships.filter(team_id=agent.team_id)
    fields: set[str] = set()
    for role in memberships.values_list("role", flat=True):
        fields |= EDITABLE_AGENT_FIELDS_BY_TEAM_ROLE.get(role, frozenset())
    return frozenset(fields)


@admin.register(Agent)
class AgentAdmin(VisibleTeamsOnly, admin.ModelAdmin):
    list_display = ("name", "team", "cost_slo_usd", "ideal_steps", "max_steps", "max_cost_usd", "created_at")
    list_filter = (("team", VisibleTeamListFilter),)
    search_fields = ("name", "team__slug")
    list_select_related = ("team",)
    fieldsets = (
        (None, {"fields": ("team", "name")}),
        ("Cost SLO and ideal run", {"fields": ("cost_slo_usd", "ideal_steps")}),
        ("Kill switch (per task)", {"fields": KILL_SWITCH_FIELDS}),
        ("Chart targets", {"fields": TARGET_FIELDS}),
    )

    def has_add_permission(self, request) -> bool:
        return False  # agents appear with their first event

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting an agent would delete its tasks' history

    def has_change_permission(self, request, obj=None) -> bool:
        return bool(editable_agent_fields(user=request.user, agent=obj))

    def get_readonly_fields(self, request, obj=None):
        editable = editable_agent_fields(user=request.user, agent=obj)
        return ("team", "name", *(field for field in AGENT_SETTING_FIELDS if field not in editable))


@admin.register(Task)
class TaskAdmin(VisibleTeamsOnly, admin.ModelAdmin):
    list_display = ("task_id", "team", "agent", "status", "ended_at", "steps", "cost_usd", "unpriced_calls")
    list_filter = ("status", ("team", VisibleTeamListFilter))
    search_fields = ("task_id", "agent__name")
    list_select_related = ("team", "agent")
    date_hierarchy = "ended_at"
    ordering = ("-ended_at",)

    def has_add_permission(self, request) -> bool:
        return False  # tasks come from POST /api/v1/tasks and the events

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
