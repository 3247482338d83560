"""Teams and agents in the API: list what you may see; change the agent settings your role allows."""

from __future__ import annotations

from rest_framework import mixins, serializers
from rest_framework.exceptions import PermissionDenied

from finops.accounts.models import Team
from finops.accounts.selectors import principal_is_token, team_role
from finops.api.fields import JsonTypes
from finops.api.permissions import ReadScope
from finops.api.viewsets import TeamScopedViewSet
from finops.ledger.models import Agent
from finops.ledger.services import AGENT_SETTING_ROLES, SettingNotAllowed, agent_settings_update


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name"]


class AgentSerializer(JsonTypes, serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Agent
        fields = ["id", "team", "name", *AGENT_SETTING_ROLES, "created_at"]
        read_only_fields = ["id", "team", "name", "created_at"]


class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer
    permission_classes = [ReadScope]
    lookup_field = "slug"
    lookup_value_regex = r"[-\w]+"  # a slug: anything else (a NUL byte) is a 404, not a query that fails


class AgentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TeamScopedViewSet
):
    queryset = Agent.objects.select_related("team").order_by("team__slug", "name")
    serializer_class = AgentSerializer
    permission_classes = [ReadScope]
    http_method_names = ["get", "patch", "head", "options"]

    def perform_update(self, serializer):
        if principal_is_token(self.principal):
            raise PermissionDenied("API tokens cannot change settings; sign in as a person with the role.")
        agent = serializer.instance
        try:
            agent_settings_update(
                agent=agent,
                role=team_role(user=self.request.user, team_id=agent.team_id),
                changes=dict(serializer.validated_data),
            )
        except SettingNotAllowed as error:
            raise PermissionDenied(str(error)) from None
