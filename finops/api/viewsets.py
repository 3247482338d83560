"""Team scoping you cannot forget: team-owned objects are only ever read through `restrict`.

Subclasses declare `queryset` and `team_field`; they may not override get_queryset (PostHog's rule) —
an escape hatch would be named dangerously_get_queryset so a grep finds it.
"""

from __future__ import annotations

from rest_framework import viewsets

from finops.accounts.models import Team


class TeamScopedViewSet(viewsets.GenericViewSet):
    team_field = "team"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides get_queryset; use team_field and filter_queryset")

    def get_queryset(self):
        principal = self.request.auth or self.request.user
        visible = Team.objects.restrict(principal)
        return self.queryset.filter(**{f"{self.team_field}__in": visible})
