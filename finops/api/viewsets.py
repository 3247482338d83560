"""Team scoping you cannot forget: the API's bases read through `restrict(principal, action)`.

`TeamScopedViewSet` subclasses declare `queryset` (a model whose manager is a RestrictedQuerySet),
`serializer_class` and `filterset_class`; they may not override get_queryset (PostHog's rule). To narrow
the restricted rows (select_related, an order) they define `safely_get_queryset(queryset)`. An endpoint
that must read past the restriction defines `dangerously_get_queryset()`, so a grep finds them all.

`ScopedAPIView` is the base of endpoints that read no model through a viewset (KPIs, events, tasks,
LiteLLM): it names the principal and its team scope explicitly instead of each view working it out.
"""

from __future__ import annotations

from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from finops.accounts.querysets import RestrictedQuerySet
from finops.accounts.selectors import visible_team_ids, writable_team_ids
from finops.api.permissions import principal_of


def action_of(request) -> str:
    """The restrict action a request needs: reading is "view", every other method "change"."""
    return "view" if request.method in SAFE_METHODS else "change"


class PrincipalScope:
    # the principal of the request and its team scope, computed once per request (a comment, not a
    # docstring: drf-spectacular would print a base class's docstring on every endpoint)

    request = None

    @property
    def principal(self):
        return principal_of(self.request)

    @cached_property
    def visible_team_ids(self) -> set[int] | None:
        return visible_team_ids(principal=self.principal)

    @cached_property
    def writable_team_ids(self) -> set[int] | None:
        return writable_team_ids(principal=self.principal)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # every query parameter of this API takes one value: of `?team=a&team=b` Django would quietly
        # read the last, answering a question the client did not ask
        repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
        if repeated:
            raise exceptions.ParseError(
                f"give each query parameter once: {', '.join(repeated)} came more than once"
            )


class TeamScopedViewSet(PrincipalScope, viewsets.GenericViewSet):
    filter_backends = [DjangoFilterBackend]  # a no-op without a filterset_class

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides get_queryset; narrow the restricted rows in safely_get_queryset"
            )
        queryset = cls.__dict__.get("queryset")
        if queryset is not None and not isinstance(queryset, RestrictedQuerySet):
            raise TypeError(f"{cls.__name__}.queryset must be a RestrictedQuerySet (one with restrict)")

    @property
    def restrict_action(self) -> str:
        return action_of(self.request)

    def get_queryset(self):
        dangerous = getattr(self, "dangerously_get_queryset", None)
        if dangerous is not None:
            return dangerous()
        return self.safely_get_queryset(self.queryset.restrict(self.principal, self.restrict_action))

    def safely_get_queryset(self, queryset):
        return queryset

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            if self.restrict_action == "view" or not self._visible():
                raise
        # seen but not writable: say so (a 404 would hide nothing the principal cannot already read)
        raise exceptions.PermissionDenied(f"you may not change this {self.queryset.model._meta.verbose_name}")

    def _visible(self) -> bool:
        lookup_value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        visible = self.safely_get_queryset(self.queryset.restrict(self.principal, "view"))
        try:
            return visible.filter(**{self.lookup_field: lookup_value}).exists()
        except (TypeError, ValueError, DjangoValidationError):
            return False


class ScopedAPIView(PrincipalScope, APIView):
    pass
