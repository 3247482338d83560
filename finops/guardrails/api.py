"""Guardrails in the API: the guard check, and allowances with their live usage (SPEC.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers
from rest_framework.response import Response

from finops.accounts.authentication import token_touch_by_id
from finops.accounts.models import Team, TokenScope
from finops.accounts.selectors import guarding_team_ids, principal_is_token, writable_team_ids
from finops.accounts.services import token_digest
from finops.api import fast
from finops.api.fields import JsonTypes
from finops.api.permissions import IngestScope, ReadOrManageScope
from finops.api.viewsets import ScopedAPIView, TeamScopedViewSet
from finops.guardrails.check import (
    AllowanceState,
    GuardDecision,
    TeamNotFound,
    guard_check,
    guard_check_for_token,
)
from finops.guardrails.models import Allowance, AllowanceAction, AllowanceWindow
from finops.guardrails.selectors import allowances_live
from finops.guardrails.services import allowance_create, allowance_delete, allowance_update
from finops.kpis.api import money
from finops.ledger.services import agent_get_or_create


def instant(moment: datetime) -> str:
    """An instant on the wire: UTC, with Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def limit_text(amount: Decimal | None) -> str | None:
    """A configured dollar limit as it was given, with at least cents ("25.00", "0.125")."""
    if amount is None:
        return None
    normalized = amount.normalize()
    return f"{normalized:f}" if -normalized.as_tuple().exponent > 2 else f"{amount:.2f}"


class GuardCheckSerializer(JsonTypes, serializers.Serializer):
    team = serializers.SlugField(max_length=64)
    agent = serializers.CharField(max_length=128)
    task_id = serializers.CharField(max_length=256, required=False, allow_null=True, allow_blank=True)
    estimated_tokens = serializers.IntegerField(
        min_value=0, max_value=10**15, required=False, allow_null=True
    )
    estimated_cost_usd = serializers.DecimalField(
        max_digits=28, decimal_places=12, min_value=Decimal(0), required=False, allow_null=True
    )


def allowance_state_json(state: AllowanceState) -> dict:
    return {
        "id": state.id,
        "scope": state.scope,
        "window": state.window,
        "limit_tokens": state.limit_tokens,
        "used_tokens": state.used_tokens,
        "reserved_tokens": state.reserved_tokens,
        "limit_usd": limit_text(state.limit_usd),
        "used_usd": money(state.used_usd),
        "reserved_usd": money(state.reserved_usd),
        "unpriced_calls": state.unpriced_calls,
        "action": state.action,
        "window_start": instant(state.window_start),
        "resets_at": instant(state.resets_at),
    }


def guard_decision_json(result: GuardDecision) -> dict:
    task = result.task
    return {
        "decision": result.decision,
        "reasons": result.reasons,
        "reservation_id": None if result.reservation_id is None else str(result.reservation_id),
        "allowances": [allowance_state_json(state) for state in result.allowances],
        "task": None
        if task is None
        else {
            "task_id": task.task_id,
            "steps": task.steps,
            "cost_usd": money(task.cost_usd),
            "unpriced_calls": task.unpriced_calls,
            "status": task.status,
            "max_steps": task.max_steps,
            "max_cost_usd": limit_text(task.max_cost_usd),
        },
    }


class GuardCheckView(ScopedAPIView):
    """POST /api/v1/guard/check: may this agent make its next call? Scope `ingest`, for the teams the
    principal may send events for."""

    permission_classes = [IngestScope]

    @extend_schema(
        request=GuardCheckSerializer,
        responses=inline_serializer(
            "GuardDecision",
            {
                "decision": serializers.ChoiceField(choices=["allow", "warn", "deny"]),
                "reasons": serializers.ListField(child=serializers.CharField()),
                "reservation_id": serializers.UUIDField(allow_null=True),
                "allowances": serializers.ListField(child=serializers.DictField()),
                "task": serializers.DictField(allow_null=True),
            },
        ),
    )
    def post(self, request):
        query = GuardCheckSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            result = guard_check(
                team_slug=params["team"],
                team_ids=self.writable_team_ids,
                agent=params["agent"],
                task_id=params.get("task_id") or None,
                estimated_tokens=params.get("estimated_tokens"),
                estimated_cost_usd=params.get("estimated_cost_usd"),
            )
        except TeamNotFound:
            raise exceptions.NotFound(f"no team {params['team']!r} that you may send events for") from None
        return Response(guard_decision_json(result))


GUARD_FIELDS = frozenset(GuardCheckSerializer().fields)
SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")  # SlugField's


def _guard_body(request) -> dict:
    """The guard check's body, read as strictly as GuardCheckSerializer would accept it, else Declined."""
    body = fast.json_object(request, fields=GUARD_FIELDS)
    return {
        "team_slug": fast.text(body.get("team"), max_length=64, required=True, pattern=SLUG),
        "agent": fast.text(body.get("agent"), max_length=128, required=True),
        "task_id": fast.text(body.get("task_id"), max_length=256, required=False) or None,
        "estimated_tokens": fast.whole_number(body.get("estimated_tokens"), maximum=10**15),
        "estimated_cost_usd": fast.money(body.get("estimated_cost_usd")),
    }


GUARD_ALLOW = "POST, OPTIONS"


def guard_check_fast(request, token) -> HttpResponse:
    """The guard check for an API token with a plain body, past DRF (finops.api.fast): the same checks
    as GuardCheckView and GuardCheckSerializer, read strictly; anything else is Declined to them."""
    if TokenScope.INGEST not in token.scopes:
        raise fast.Declined
    params = _guard_body(request)
    try:
        result = guard_check(team_ids=writable_team_ids(principal=token), **params)
    except TeamNotFound:
        raise fast.Declined from None  # the view's 404, which names the team
    return fast.json_response(guard_decision_json(result), allow=GUARD_ALLOW)


def guard_check_edge(request) -> HttpResponse:
    """guard_check_fast in front of Django (finops.api.edge): the bearer's token is read in the check's
    own statement (guard_check_for_token), one round trip in all. No live token with the ingest
    scope, or no such team for it: Declined, and the full path gives its 401, 403 or 404."""
    secret = fast.bearer_secret(request)
    if secret is None:
        raise fast.Declined
    params = _guard_body(request)
    answered = guard_check_for_token(token_digest=token_digest(secret), scope=TokenScope.INGEST, **params)
    if answered is None:
        raise fast.Declined
    token_touch_by_id(token_id=answered.token_id, last_used_at=answered.token_last_used_at)
    return fast.json_response(guard_decision_json(answered.decision), allow=GUARD_ALLOW)


class AllowanceSerializer(JsonTypes, serializers.ModelSerializer):
    team = serializers.SlugField(max_length=64)
    agent = serializers.CharField(max_length=128, allow_null=True, required=False)
    window = serializers.ChoiceField(choices=AllowanceWindow.choices)
    action = serializers.ChoiceField(choices=AllowanceAction.choices, default=AllowanceAction.DENY)
    limit_tokens = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    limit_usd = serializers.DecimalField(
        max_digits=18, decimal_places=6, min_value=Decimal(0), allow_null=True, required=False
    )
    warn_at = serializers.FloatField(min_value=0, max_value=1, default=0.8)
    # live, for the current window (to_representation fills them from allowances_live)
    used_tokens = serializers.IntegerField(read_only=True)
    used_usd = serializers.CharField(read_only=True)
    unpriced_calls = serializers.IntegerField(read_only=True)
    reserved_tokens = serializers.IntegerField(read_only=True)
    reserved_usd = serializers.CharField(read_only=True)
    window_start = serializers.DateTimeField(read_only=True)
    resets_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Allowance
        fields = [
            "id",
            "team",
            "agent",
            "window",
            "limit_tokens",
            "limit_usd",
            "warn_at",
            "action",
            "used_tokens",
            "used_usd",
            "unpriced_calls",
            "reserved_tokens",
            "reserved_usd",
            "window_start",
            "resets_at",
        ]
        read_only_fields = ["id"]

    @property
    def schema_rules(self) -> dict:
        # validate()'s "at least one limit", stated for clients; a PATCH keeps the limits it leaves out
        if self.partial:
            return {}
        return {
            "anyOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in ("limit_tokens", "limit_usd")
            ]
        }

    def validate(self, attrs):
        instance = self.instance
        limit_tokens = attrs.get("limit_tokens", instance.limit_tokens if instance else None)
        limit_usd = attrs.get("limit_usd", instance.limit_usd if instance else None)
        if limit_tokens is None and limit_usd is None:
            raise serializers.ValidationError(
                {"limit_usd": ["give limit_usd or limit_tokens (or both): an allowance needs a limit"]}
            )
        if instance is not None and "team" in attrs and attrs["team"] != instance.team.slug:
            raise serializers.ValidationError(
                {"team": ["an allowance stays with its team; create a new one"]}
            )
        return attrs

    def to_representation(self, allowance: Allowance) -> dict:
        live = self.context["live"][allowance.pk]
        return {
            "id": allowance.pk,
            "team": allowance.team.slug,
            "agent": allowance.agent.name if allowance.agent_id else None,
            "window": allowance.window,
            "limit_tokens": allowance.limit_tokens,
            "limit_usd": limit_text(allowance.limit_usd),
            "warn_at": allowance.warn_at,
            "action": allowance.action,
            "used_tokens": live.used_tokens,
            "used_usd": money(live.used_usd),
            "unpriced_calls": live.unpriced_calls,
            "reserved_tokens": live.reserved_tokens,
            "reserved_usd": money(live.reserved_usd),
            "window_start": instant(live.window_start),
            "resets_at": instant(live.resets_at),
        }


class AllowanceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    """Allowances of the teams you may see; created and changed by the team's sre and tech_lead, admin
    and finops, and `manage` tokens (every change audited)."""

    queryset = Allowance.objects.select_related("team", "agent")
    serializer_class = AllowanceSerializer
    permission_classes = [ReadOrManageScope]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_context(self):
        # OPTIONS (DRF's metadata) builds a serializer before any action sets _live
        return {**super().get_serializer_context(), "live": getattr(self, "_live", {})}

    def list(self, request, *args, **kwargs):
        allowances = list(self.filter_queryset(self.get_queryset()))
        self._live = allowances_live(allowances=allowances)
        return Response(self.get_serializer(allowances, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        allowance = self.get_object()
        return self._answer(allowance)

    def _answer(self, allowance: Allowance, status: int = 200) -> Response:
        self._live = allowances_live(allowances=[allowance])
        return Response(self.get_serializer(allowance).data, status=status)

    def _fields(self, data: dict, team: Team) -> dict:
        fields = {name: value for name, value in data.items() if name not in {"team", "agent"}}
        if "agent" in data:
            fields["agent"] = agent_get_or_create(team=team, name=data["agent"]) if data["agent"] else None
        return fields

    def create(self, request, *args, **kwargs):
        self._live = {}
        serializer = AllowanceSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = Team.objects.restrict(self.principal, "view").filter(slug=data["team"]).first()
        if team is None:  # outside your teams, as everywhere: a 404 that reads the same as no such team
            raise exceptions.NotFound(f"no team {data['team']!r} that you may see")
        guarded = guarding_team_ids(principal=self.principal)
        if guarded is not None and team.pk not in guarded:
            raise exceptions.PermissionDenied(f"you may not change the guardrails of team {team.slug!r}")
        with transaction.atomic():
            allowance = allowance_create(
                principal=self.principal,
                created_by=None if principal_is_token(self.principal) else self.principal,
                team=team,
                **self._fields(data, team),
            )
        return self._answer(allowance, status=201)

    def partial_update(self, request, *args, **kwargs):
        allowance = self.get_object()
        self._live = {}
        serializer = AllowanceSerializer(
            allowance, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        allowance = allowance_update(
            principal=self.principal,
            allowance=allowance,
            changes=self._fields(serializer.validated_data, allowance.team),
        )
        return self._answer(allowance)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        allowance_delete(principal=self.principal, allowance=self.get_object())
        return Response(status=204)
