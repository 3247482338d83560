"""Teams and agents in the API: list what you may see; change the agent settings your role allows, and
(finops and admin) a team's monthly budget."""

from __future__ import annotations

from rest_framework import mixins, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS

from finops.accounts.models import Team
from finops.accounts.selectors import (
    guarding_team_ids,
    principal_is_authenticated,
    principal_is_token,
    principal_manages_billing,
    team_role,
)
from finops.accounts.services import BudgetNotAllowed, team_budget_set
from finops.api.fields import JsonTypes
from finops.api.permissions import ReadOrManageScope, ReadScope, principal_of
from finops.api.viewsets import TeamScopedViewSet
from finops.ledger.models import Agent
from finops.ledger.services import AGENT_SETTING_ROLES, SettingNotAllowed, agent_settings_update


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name", "monthly_budget_usd"]
        read_only_fields = ["id", "slug", "name"]


class TeamBudgetPermission(ReadScope):
    """Reading a team needs the `read` scope; setting its budget is for people with the finops or admin
    role (SPEC.md, roles: "team budgets"), never an API token. Judged on the team, so a team outside
    the caller's reach is a 404 first."""

    message = "Setting a team's monthly budget needs the finops or admin role (API tokens may not)."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return super().has_permission(request, view)
        return principal_is_authenticated(principal_of(request))

    def has_object_permission(self, request, view, obj) -> bool:
        return request.method in SAFE_METHODS or principal_manages_billing(principal_of(request))


class AgentSerializer(JsonTypes, serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Agent
        fields = ["id", "team", "name", *AGENT_SETTING_ROLES, "created_at"]
        read_only_fields = ["id", "team", "name", "created_at"]


class TeamViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TeamScopedViewSet
):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer
    permission_classes = [TeamBudgetPermission]
    lookup_field = "slug"
    lookup_value_regex = r"[-\w]+"  # a slug: anything else (a NUL byte) is a 404, not a query that fails
    http_method_names = ["get", "patch", "head", "options"]

    @property
    def restrict_action(self) -> str:
        # a team's budget is the finops role's (TeamBudgetPermission), not its members' to change
        return "view"

    def perform_update(self, serializer):
        team = serializer.instance
        try:
            serializer.instance = team_budget_set(
                team=team,
                monthly_budget_usd=serializer.validated_data.get(
                    "monthly_budget_usd", team.monthly_budget_usd
                ),
                principal=self.principal,
            )
        except BudgetNotAllowed as error:
            raise PermissionDenied(str(error)) from None


class AgentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TeamScopedViewSet
):
    queryset = Agent.objects.select_related("team").order_by("team__slug", "name")
    serializer_class = AgentSerializer
    permission_classes = [ReadOrManageScope]
    http_method_names = ["get", "patch", "head", "options"]

    @property
    def restrict_action(self) -> str:
        # who may change which setting is the role's (AGENT_SETTING_ROLES), decided in perform_update
        return "view"

    def perform_update(self, serializer):
        agent = serializer.instance
        if principal_is_token(self.principal):
            # a `manage` token may do what an sre may: the kill switch of its team's agents
            guarded = guarding_team_ids(principal=self.principal)
            if guarded is not None and agent.team_id not in guarded:
                raise PermissionDenied(
                    "API tokens may change only the kill switch (max_steps, max_cost_usd), with the "
                    "'manage' scope; sign in as a person with the role for other settings."
                )
            role = "sre"
        else:
            role = team_role(user=self.request.user, team_id=agent.team_id)
        try:
            agent_settings_update(
                agent=agent, role=role, changes=dict(serializer.validated_data), principal=self.principal
            )
        except SettingNotAllowed as error:
            raise PermissionDenied(str(error)) from None
