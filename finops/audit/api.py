"""The audit log in the API: `GET /api/v1/audit`, newest first, scoped to the teams you may see."""

from __future__ import annotations

from django_filters import rest_framework as filters
from rest_framework import mixins, serializers

from finops.api.filters import StoredTextFilter
from finops.api.pagination import LimitOffsetPagination
from finops.api.permissions import ReadOrManageScope
from finops.api.viewsets import TeamScopedViewSet
from finops.audit.models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "who", "team", "object_type", "object_id", "action", "before", "after"]
        read_only_fields = fields


class AuditEntryFilter(filters.FilterSet):
    team = StoredTextFilter(field_name="team__slug")
    object_type = StoredTextFilter()
    object_id = StoredTextFilter()

    class Meta:
        model = AuditEntry
        fields = ["team", "object_type", "object_id"]


class AuditPage(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class AuditEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    queryset = AuditEntry.objects.select_related("team")
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    filter_backends = [filters.DjangoFilterBackend]
    pagination_class = AuditPage
    permission_classes = [ReadOrManageScope]
