"""GET /api/v1/whoami: who the API takes the caller for, so a client can check its credentials."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from finops.accounts.models import ApiToken, TokenScope
from finops.accounts.selectors import memberships_of, principal_is_token
from finops.api import fast
from finops.api.viewsets import ScopedAPIView


def token_json(token: ApiToken) -> dict:
    return {
        "kind": "token",
        "name": token.name,
        "team": None if token.team is None else token.team.slug,
        "scopes": sorted(token.scopes),
        "org_role": None,
        "teams": [],
    }


class WhoAmIView(ScopedAPIView):
    """The API token (its name, team and scopes) or the signed-in person (their teams and roles) that
    this request authenticated as. Any scope may ask."""

    @extend_schema(
        responses=inline_serializer(
            "WhoAmI",
            {
                "kind": serializers.ChoiceField(choices=["token", "person"]),
                "name": serializers.CharField(help_text="the token's name, or the person's username"),
                "team": serializers.CharField(allow_null=True, help_text="a team-bound token's team"),
                "scopes": serializers.ListField(child=serializers.CharField()),
                "org_role": serializers.CharField(allow_null=True, help_text="a person's org role"),
                "teams": serializers.ListField(
                    child=serializers.DictField(), help_text="a person's teams: {team, role}"
                ),
            },
        )
    )
    def get(self, request):
        principal = self.principal
        if principal_is_token(principal):
            return Response(token_json(principal))
        return Response(
            {
                "kind": "person",
                "name": principal.get_username(),
                "team": None,
                "scopes": sorted(TokenScope.values),  # a person holds every scope; roles decide the rest
                "org_role": "admin" if principal.is_superuser else principal.org_role or None,
                "teams": [
                    {"team": member.team_slug, "role": member.role}
                    for member in memberships_of(user=principal)
                ],
            }
        )


def whoami_fast(request, token: ApiToken):
    if request.method != "GET" or request.GET:
        raise fast.Declined
    return fast.json_response(token_json(token), allow="GET, HEAD, OPTIONS")
