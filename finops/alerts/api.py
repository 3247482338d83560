"""Alerts in the API (SPEC.md, "Alerts"): channels, rules, the alerts they raise (with acknowledgement),
silences, and the deliveries that tell whether a channel works.

Reading needs the `read` scope (or `manage`); changing needs `manage`, or a session of the team's sre or
tech_lead, or the admin and finops roles (finops.alerts.services decides, for the pages too). A request
the schema describes is answered; a body that breaks a field's rule, or a rule of the kind it names
(stated in the schema as `schema_rules`), is a 400 naming the field; a well-formed change that does not
fit what is stored (a PATCH leaving a rule without what its kind needs, a channel of another team,
acknowledging a resolved alert) is a 409, naming the field the same way."""

from __future__ import annotations

import re
from contextlib import contextmanager
from decimal import Decimal

from django import forms
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from finops.accounts.models import Team
from finops.alerts.models import (
    Alert,
    AlertChannel,
    AlertRule,
    AlertState,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    RuleKind,
    RuleOp,
    RuleWindow,
    Silence,
)
from finops.alerts.selectors import alerts_since
from finops.alerts.services import (
    EMAIL_TARGET,
    MINUTES_MAX,
    NAME_PATTERN,
    RUNAWAY_METRICS,
    THRESHOLD_METRICS,
    URL_TARGET,
    WEBHOOK_SECRET,
    alert_acknowledge,
    channel_create,
    channel_delete,
    channel_update,
    channel_validate,
    rule_create,
    rule_delete,
    rule_update,
    rule_validate,
    silence_create,
    silence_delete,
)
from finops.api.fields import JsonTypes
from finops.api.filters import StoredTextFilter, UtcDateTimeFilter
from finops.api.pagination import LimitOffsetPagination
from finops.api.permissions import ReadOrManageScope
from finops.api.schema import ErrorSerializer
from finops.api.viewsets import TeamScopedViewSet
from finops.ledger.models import Agent

NAMED = RegexValidator(NAME_PATTERN, "must hold more than spaces")


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(filters.NumberFilter):
    """A row's id: a whole number (an id no row has matches nothing)."""

    field_class = forms.IntegerField


@extend_schema_field({"type": "string", "enum": ["true", "false"]})
class TrueOrFalseFilter(filters.ChoiceFilter):
    """`true` or `false`, nothing else (django-filter's BooleanFilter reads any other value as no filter,
    answering a question the client did not ask)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, choices=[("true", "true"), ("false", "false")], **kwargs)

    def filter(self, queryset, value):
        # (with a `method`, django-filter calls the method instead, with "true" or "false")
        if value in ("", None):
            return queryset
        return queryset.filter(**{self.field_name: value == "true"})


class Conflict(exceptions.ValidationError):
    """A well-formed request that does not fit what is stored: answered in the validation error's shape
    (extra.fields names the field), with 409."""

    status_code = status.HTTP_409_CONFLICT


def conflict_response(what: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=f"{what}: `extra.fields` names the field")


@contextmanager
def service_errors(*, conflict: bool = False):
    """A service's ValidationError as the API's 400 (or 409: `conflict`), its PermissionDenied as a 403
    keeping its reason."""
    try:
        yield
    except DjangoValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        raise (Conflict if conflict else exceptions.ValidationError)(detail) from None
    except DjangoPermissionDenied as error:
        raise exceptions.PermissionDenied(str(error) or None) from None


def team_named(principal, slug: str | None) -> Team | None:
    """The team a body names (None: the organisation); one the principal cannot see is a 404 that reads
    as a team that does not exist."""
    if slug is None:
        return None
    team = Team.objects.restrict(principal, "view").filter(slug=slug).first()
    if team is None:
        raise exceptions.NotFound(f"no team {slug!r} that you may see")
    return team


def agent_named(principal, team: Team | None, name: str | None) -> Agent | None:
    if not name:
        return None
    if team is None:  # agents live in teams: an organisation-wide rule names none
        raise exceptions.NotFound(f"no agent {name!r} outside a team: name the agent's team")
    agent = Agent.objects.restrict(principal, "view").filter(team=team, name=name).first()
    if agent is None:
        raise exceptions.NotFound(f"no agent {name!r} in team {team.slug!r}")
    return agent


def decimal_text(value: Decimal | None) -> str | None:
    """A stored decimal as plain digits, without the column's trailing zeros ("0.25", "120")."""
    if value is None:
        return None
    text = f"{value.normalize():f}"
    return text


def moment(value):
    """A stored instant as every API answer gives it (the project's time zone, ISO 8601)."""
    return serializers.DateTimeField().to_representation(value) if value is not None else None


def not_null(name: str) -> dict:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def one_of(values) -> dict:
    """A string that is one of `values`, as a pattern: an `enum` here would be taken by spectacular's
    enum post-processing for a component of all the field's choices."""
    return {"type": "string", "pattern": "^(?:" + "|".join(re.escape(str(value)) for value in values) + ")$"}


def absent_or_null(name: str) -> list[dict]:
    return [{"not": {"required": [name]}}, {"properties": {name: {"type": "null"}}}]


def empty(name: str) -> dict:
    """`name` left out, null or "": what a kind that does not read it takes."""
    return {"properties": {name: {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]}}}


# --- channels -------------------------------------------------------------------------------------


class AlertChannelSerializer(JsonTypes, serializers.Serializer):
    """A channel: where alerts of its team (or, with no team, of any team) are sent."""

    id = serializers.IntegerField(read_only=True)
    team = serializers.SlugField(max_length=64, allow_null=True, help_text="null: an organisation channel")
    name = serializers.CharField(
        max_length=128, required=False, allow_blank=True, default="", trim_whitespace=False
    )
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    target = serializers.CharField(
        max_length=2048,
        trim_whitespace=False,
        help_text="webhook, slack: an http(s) URL; email: an address. A URL is a secret: read by whoever "
        "may not change the channel, only its scheme, host and last four characters are shown "
        "(`https://hooks.slack.com/…Xy9z`).",
    )
    secret = serializers.CharField(
        max_length=256,
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="webhook only: `whsec_` + base64 of a 24 to 64 byte key; left out, one is generated and "
        "shown once, in the answer to the create. Never shown after.",
    )
    # the channel's health, from its deliveries
    last_success_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_failure_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_error = serializers.CharField(read_only=True)
    consecutive_failures = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    @property
    def schema_rules(self) -> dict:
        # what a target (and secret) each kind takes; a PATCH is checked against the channel's kind (409)
        if self.partial:
            return {}
        return {
            "oneOf": [
                {
                    "properties": {
                        "kind": one_of([ChannelKind.WEBHOOK.value]),
                        "target": {"pattern": URL_TARGET},
                        "secret": {
                            "anyOf": [{"type": "null"}, {"maxLength": 0}, {"pattern": WEBHOOK_SECRET}]
                        },
                    }
                },
                *(
                    {
                        "properties": {
                            "kind": one_of([kind]),
                            "target": {"pattern": pattern},
                            "secret": {"anyOf": [{"type": "null"}, {"maxLength": 0}]},
                        }
                    }
                    for kind, pattern in (
                        (ChannelKind.SLACK.value, URL_TARGET),
                        (ChannelKind.EMAIL.value, EMAIL_TARGET),
                    )
                ),
            ]
        }

    def validate(self, attrs):
        if self.partial:
            return attrs
        # the service's rules, as a 400 of the fields (they are the schema's)
        with service_errors():
            channel_validate(kind=attrs["kind"], target=attrs["target"], secret=attrs.get("secret") or "")
        return attrs

    def to_representation(self, channel: AlertChannel) -> dict:
        return {
            "id": channel.pk,
            "team": channel.team.slug if channel.team_id else None,
            "name": channel.name,
            "kind": channel.kind,
            "target": self._target(channel),
            "last_success_at": moment(channel.last_success_at),
            "last_failure_at": moment(channel.last_failure_at),
            "last_error": channel.last_error,
            "consecutive_failures": channel.consecutive_failures,
            "created_at": moment(channel.created_at),
        }

    def _target(self, channel: AlertChannel) -> str:
        # a URL is a secret: in full only to whoever may change the channel (the context names those
        # channels when the answer is read by others; a create or update is answered to its changer)
        changeable = self.context.get("changeable_channel_ids")
        return channel.target if changeable is None or channel.pk in changeable else channel.target_masked


class AlertChannelCreatedSerializer(AlertChannelSerializer):
    # the answer to a create: the channel, and the secret generated for it (the only time it is shown)
    secret = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="the generated webhook secret, shown this once; null when you gave one (or the kind "
        "is not signed)",
    )

    class Meta:
        ref_name = "AlertChannelCreated"


class AlertChannelFilter(filters.FilterSet):
    team = StoredTextFilter(field_name="team__slug")
    kind = filters.ChoiceFilter(choices=ChannelKind.choices)

    class Meta:
        model = AlertChannel
        fields = ["team", "kind"]


@extend_schema_view(
    create=extend_schema(responses={201: AlertChannelCreatedSerializer}),
    partial_update=extend_schema(
        responses={200: AlertChannelSerializer, 409: conflict_response("the target does not suit the kind")}
    ),
)
class AlertChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    """Where alerts go: webhooks (signed, Standard Webhooks), Slack incoming webhooks, email. A webhook's
    secret is shown once, when it is generated."""

    queryset = AlertChannel.objects.select_related("team")
    serializer_class = AlertChannelSerializer
    filterset_class = AlertChannelFilter
    permission_classes = [ReadOrManageScope]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_context(self):
        # who may change which channel: the others read a webhook or Slack URL masked
        changeable = AlertChannel.objects.restrict(self.principal, "change").values_list("pk", flat=True)
        return {**super().get_serializer_context(), "changeable_channel_ids": set(changeable)}

    def create(self, request, *args, **kwargs):
        serializer = AlertChannelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = team_named(self.principal, data["team"])
        with service_errors():
            channel, shown_once = channel_create(
                principal=self.principal,
                team=team,
                kind=data["kind"],
                target=data["target"],
                secret=data.get("secret") or None,
                name=data.get("name", ""),
            )
        return Response({**AlertChannelSerializer(channel).data, "secret": shown_once}, status=201)

    def partial_update(self, request, *args, **kwargs):
        channel = self.get_object()
        serializer = AlertChannelSerializer(channel, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "team" in changes:
            slug = changes.pop("team")
            if slug != (channel.team.slug if channel.team_id else None):
                raise Conflict({"team": ["a channel keeps its team; create a new channel instead"]})
        with service_errors(conflict=True):
            channel = channel_update(principal=self.principal, channel=channel, **changes)
        return Response(AlertChannelSerializer(channel).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        with service_errors():
            channel_delete(principal=self.principal, channel=self.get_object())
        return Response(status=204)


# --- rules ----------------------------------------------------------------------------------------

VALUE_KINDS = (
    RuleKind.THRESHOLD,
    RuleKind.FORECAST,
    RuleKind.ANOMALY,
    RuleKind.RUNAWAY_TASK,
    RuleKind.CACHE_COLLAPSE,
)
# a drop in hit rate, 0 to 1 (as DecimalField reads them, no sign)
AT_MOST_ONE = r"^0*(?:1(?:\.0{0,6})?|0?(?:\.\d{0,6})?)$"


def rule_kind_rules() -> list[dict]:
    """Per kind, what a rule needs and what it must leave empty (services.KIND_FIELDS), as JSON Schema."""
    over = {"properties": {"op": one_of([RuleOp.GT.value])}}
    windows = {"properties": {"window": one_of(list(RuleWindow.values))}}
    no_value = {"properties": {"value": {"type": "null"}}}

    def kind(name: str, *parts: dict) -> dict:
        merged: dict = {"properties": {"kind": one_of([name])}, "required": ["kind"]}
        for part in parts:
            merged["properties"].update(part.get("properties", {}))
            merged["required"] = [*merged["required"], *part.get("required", [])]
        return merged

    return [
        kind(
            RuleKind.THRESHOLD,
            not_null("metric"),
            {"properties": {"metric": one_of(list(THRESHOLD_METRICS))}},
            not_null("value"),
            not_null("window"),
            windows,
        ),
        kind(RuleKind.FORECAST, not_null("value"), empty("metric"), empty("window"), over),
        kind(RuleKind.ANOMALY, not_null("value"), not_null("window"), windows, empty("metric"), over),
        kind(
            RuleKind.RUNAWAY_TASK,
            not_null("metric"),
            {"properties": {"metric": one_of(["cost_usd", "steps"])}},
            not_null("value"),
            empty("window"),
            over,
        ),
        kind(
            RuleKind.CACHE_COLLAPSE,
            not_null("value"),
            {"properties": {"value": {"type": "string", "pattern": AT_MOST_ONE}}},
            empty("metric"),
            empty("window"),
            over,
        ),
        kind(RuleKind.ALLOWANCE, no_value, empty("metric"), empty("window"), over),
    ]


class AlertRuleSerializer(JsonTypes, serializers.Serializer):
    """A rule: what to watch, for which team or agent, and where to send its alerts."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=128, trim_whitespace=False, validators=[NAMED])
    team = serializers.SlugField(max_length=64, allow_null=True, help_text="null: every team")
    agent = serializers.CharField(
        max_length=128,
        allow_null=True,
        required=False,
        default=None,
        trim_whitespace=False,
        help_text="one agent of the team (by name); null: every agent",
    )
    kind = serializers.ChoiceField(
        choices=RuleKind.choices,
        help_text="threshold: metric, op, value, window; forecast: value; anomaly: value (a multiple of the "
        "trailing baseline), window; runaway_task: metric (cost_usd or steps), value; cache_collapse: value "
        "(a drop in hit rate, 0 to 1); allowance: nothing. A kind leaves the others empty.",
    )
    metric = serializers.ChoiceField(
        choices=[("", "none"), *THRESHOLD_METRICS.items(), ("steps", RUNAWAY_METRICS["steps"])],
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        help_text="threshold: a number of GET /api/v1/kpis (nested ones dotted: tasks.failed, tokens.output) "
        "or tokens (all six summed); runaway_task: cost_usd or steps",
    )
    op = serializers.ChoiceField(choices=RuleOp.choices, required=False, default=RuleOp.GT)
    value = serializers.DecimalField(
        max_digits=24, decimal_places=6, min_value=Decimal(0), required=False, allow_null=True, default=None
    )
    window = serializers.ChoiceField(
        choices=[("", "none"), *RuleWindow.choices],
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
    )
    for_minutes = serializers.IntegerField(min_value=0, max_value=MINUTES_MAX, required=False, default=0)
    repeat_minutes = serializers.IntegerField(
        min_value=0,
        max_value=MINUTES_MAX,
        required=False,
        default=240,
        help_text="notify again every so many minutes while firing and unacknowledged; 0: once",
    )
    channels = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        required=False,
        default=list,
        max_length=100,
        help_text="channel ids: the team's channels, or the organisation's",
    )
    enabled = serializers.BooleanField(required=False, default=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    @property
    def schema_rules(self) -> dict:
        # what each kind needs and leaves empty; a PATCH is checked against the stored rule (409)
        if self.partial:
            return {}
        return {"oneOf": rule_kind_rules()}

    def validate(self, attrs):
        for name in ("metric", "window"):
            if attrs.get(name) is None and name in attrs:
                attrs[name] = ""
        if self.partial:
            return attrs
        rule = AlertRule(
            name=attrs["name"],
            kind=attrs["kind"],
            metric=attrs.get("metric", ""),
            op=attrs.get("op", RuleOp.GT),
            value=attrs.get("value"),
            window=attrs.get("window", ""),
            for_minutes=attrs.get("for_minutes", 0),
            repeat_minutes=attrs.get("repeat_minutes", 240),
        )
        with service_errors():
            rule_validate(rule=rule)
        return attrs

    def to_representation(self, rule: AlertRule) -> dict:
        return {
            "id": rule.pk,
            "name": rule.name,
            "team": rule.team.slug if rule.team_id else None,
            "agent": rule.agent.name if rule.agent_id else None,
            "kind": rule.kind,
            "metric": rule.metric,
            "op": rule.op,
            "value": decimal_text(rule.value),
            "window": rule.window,
            "for_minutes": rule.for_minutes,
            "repeat_minutes": rule.repeat_minutes,
            "channels": sorted(channel.pk for channel in rule.channels.all()),
            "enabled": rule.enabled,
            "created_at": moment(rule.created_at),
            "updated_at": moment(rule.updated_at),
        }


class AlertRuleFilter(filters.FilterSet):
    team = StoredTextFilter(field_name="team__slug")
    kind = filters.ChoiceFilter(choices=RuleKind.choices)
    enabled = TrueOrFalseFilter()

    class Meta:
        model = AlertRule
        fields = ["team", "kind", "enabled"]


@extend_schema_view(
    create=extend_schema(
        responses={201: AlertRuleSerializer, 409: conflict_response("a channel named is another team's")}
    ),
    partial_update=extend_schema(
        responses={
            200: AlertRuleSerializer,
            409: conflict_response("the rule would lack what its kind needs, or keep what it ignores"),
        }
    ),
)
class AlertRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    """Alert rules of the teams you may see (team null: every team's, kept by admin and finops)."""

    queryset = AlertRule.objects.select_related("team", "agent").prefetch_related("channels")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter
    permission_classes = [ReadOrManageScope]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def _fields(self, data: dict, team: Team | None) -> dict:
        fields = {name: value for name, value in data.items() if name not in {"team", "agent"}}
        if "agent" in data:
            fields["agent"] = agent_named(self.principal, team, data["agent"])
        return fields

    def create(self, request, *args, **kwargs):
        serializer = AlertRuleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = team_named(self.principal, data["team"])
        fields = self._fields(data, team)
        channels = self._channels(fields.pop("channels", []))
        with service_errors(conflict=True):
            rule = rule_create(principal=self.principal, team=team, channels=channels, **fields)
        return Response(AlertRuleSerializer(rule).data, status=201)

    def _channels(self, ids: list[int], attached=()) -> list[AlertChannel]:
        """The channels named: each one the principal sees (or one already on the rule), else a 404
        naming it."""
        found = {
            channel.pk: channel
            for channel in AlertChannel.objects.restrict(self.principal, "view").filter(pk__in=ids)
        }
        found.update({channel.pk: channel for channel in attached if channel.pk in ids})
        missing = [str(pk) for pk in dict.fromkeys(ids) if pk not in found]
        if missing:
            raise exceptions.NotFound(f"no alert channel {', '.join(missing)} that you may see")
        return [found[pk] for pk in dict.fromkeys(ids)]

    def partial_update(self, request, *args, **kwargs):
        rule = self.get_object()
        serializer = AlertRuleSerializer(rule, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = rule.team
        if "team" in data:
            team = data["team"] and team_named(self.principal, data["team"])
            data["team"] = team
        changes = {name: value for name, value in data.items() if name != "agent"}
        if "agent" in data:
            changes["agent"] = agent_named(self.principal, team, data["agent"])
        elif "team" in data and rule.agent_id and team != rule.team:
            changes["agent"] = agent_named(self.principal, team, rule.agent.name)
        if "channels" in changes:
            changes["channels"] = self._channels(changes["channels"], attached=rule.channels.all())
        with service_errors(conflict=True):
            rule = rule_update(principal=self.principal, rule=rule, **changes)
        rule = self.get_queryset().get(pk=rule.pk)
        return Response(AlertRuleSerializer(rule).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        with service_errors():
            rule_delete(principal=self.principal, rule=self.get_object())
        return Response(status=204)


# --- alerts ---------------------------------------------------------------------------------------


class AlertSerializer(serializers.ModelSerializer):
    """One breach of a rule for one subject (a team, agent or task), pending, firing or resolved."""

    rule_name = serializers.CharField(source="rule.name", read_only=True)
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    value = serializers.SerializerMethodField(help_text="what the rule measured, exact decimal")
    threshold = serializers.SerializerMethodField(help_text="what it was compared with, exact decimal")
    acknowledged_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="null: not acknowledged, or by a token",
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "team",
            "subject",
            "state",
            "value",
            "threshold",
            "summary",
            "started_at",
            "fired_at",
            "resolved_at",
            "acknowledged_by",
            "acknowledged_at",
            "last_notified_at",
        ]
        read_only_fields = fields

    def get_value(self, alert: Alert) -> str | None:
        return decimal_text(alert.value)

    def get_threshold(self, alert: Alert) -> str | None:
        return decimal_text(alert.threshold)


class AlertFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=AlertState.choices)
    rule = IdFilter(field_name="rule_id")
    team = StoredTextFilter(field_name="team__slug")
    since = UtcDateTimeFilter(method="open_since", help_text="only alerts open at some moment since then")

    class Meta:
        model = Alert
        fields = ["state", "rule", "team", "since"]

    def open_since(self, queryset, name, value):
        return alerts_since(queryset, since=value)


class AlertPage(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


@extend_schema_view(
    ack=extend_schema(
        request=None,
        responses={200: AlertSerializer, 409: conflict_response("the alert is resolved")},
    )
)
class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    """Alerts, newest first: one per rule and subject while open, resolved ones as history."""

    queryset = Alert.objects.select_related("rule", "team", "acknowledged_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    pagination_class = AlertPage
    permission_classes = [ReadOrManageScope]

    @action(detail=True, methods=["post"])
    def ack(self, request, *args, **kwargs):
        """Acknowledge an open alert: someone is on it, so it is not notified again until it resolves."""
        with service_errors(conflict=True):
            alert = alert_acknowledge(principal=self.principal, alert=self.get_object())
        return Response(AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)


# --- silences -------------------------------------------------------------------------------------


class SilenceSerializer(JsonTypes, serializers.ModelSerializer):
    """While a silence lasts, alerts of its rule, or of its team (or agent), notify no one."""

    team = serializers.SlugField(
        max_length=64,
        allow_null=True,
        required=False,
        default=None,
        help_text="null with no rule: everything",
    )
    agent = serializers.CharField(
        max_length=128,
        allow_null=True,
        required=False,
        default=None,
        trim_whitespace=False,
        help_text="one agent of `team`, by name",
    )
    rule = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        allow_null=True,
        required=False,
        default=None,
        help_text="a rule's id: silence that rule alone",
    )
    starts_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="default: now"
    )
    ends_at = serializers.DateTimeField(help_text="after starts_at, and in the future")
    reason = serializers.CharField(
        max_length=512, required=False, allow_blank=True, default="", trim_whitespace=False
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Silence
        fields = ["id", "team", "agent", "rule", "starts_at", "ends_at", "reason", "created_by", "created_at"]
        read_only_fields = ["id", "created_by", "created_at"]

    @property
    def schema_rules(self) -> dict:
        # a rule, or a team and maybe one of its agents: never a rule with a team or an agent; an agent
        # only with its team
        return {
            "allOf": [
                {
                    "anyOf": [
                        *absent_or_null("rule"),
                        {"allOf": [{"anyOf": absent_or_null("team")}, {"anyOf": absent_or_null("agent")}]},
                    ]
                },
                {"anyOf": [*absent_or_null("agent"), not_null("team")]},
            ]
        }

    def validate(self, attrs):
        # the scope rules of schema_rules, as a 400 of the field
        if attrs.get("rule") is not None:
            for name in ("team", "agent"):
                if attrs.get(name) is not None:
                    raise serializers.ValidationError(
                        {name: [f"a rule's silence names no {name}: it is the rule's"]}
                    )
        elif attrs.get("agent") is not None and attrs.get("team") is None:
            raise serializers.ValidationError({"agent": ["an agent belongs to a team: give the team too"]})
        return attrs

    def to_representation(self, silence: Silence) -> dict:
        return {
            "id": silence.pk,
            "team": silence.team.slug if silence.team_id else None,
            "agent": silence.agent.name if silence.agent_id else None,
            "rule": silence.rule_id,
            "starts_at": moment(silence.starts_at),
            "ends_at": moment(silence.ends_at),
            "reason": silence.reason,
            "created_by": silence.created_by.get_username() if silence.created_by_id else None,
            "created_at": moment(silence.created_at),
        }


class SilenceFilter(filters.FilterSet):
    team = StoredTextFilter(field_name="team__slug")
    active = TrueOrFalseFilter(
        method="in_force", help_text="true: in force now or still to come; false: ended"
    )

    class Meta:
        model = Silence
        fields = ["team", "active"]

    def in_force(self, queryset, name, value):
        from django.utils import timezone

        now = timezone.now()
        return queryset.filter(ends_at__gt=now) if value == "true" else queryset.filter(ends_at__lte=now)


class SilenceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    """Silences: while one lasts, the alerts of its scope change state but notify no one. DELETE ends a
    silence now (one that has not started is removed)."""

    queryset = Silence.objects.select_related("team", "agent", "rule", "created_by")
    serializer_class = SilenceSerializer
    filterset_class = SilenceFilter
    permission_classes = [ReadOrManageScope]

    def create(self, request, *args, **kwargs):
        serializer = SilenceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rule = None
        if data.get("rule") is not None:
            rule = AlertRule.objects.restrict(self.principal, "view").filter(pk=data["rule"]).first()
            if rule is None:
                raise exceptions.NotFound(f"no alert rule {data['rule']} that you may see")
        team = team_named(self.principal, data.get("team"))
        agent = agent_named(self.principal, team, data.get("agent"))
        with service_errors():
            silence = silence_create(
                principal=self.principal,
                team=team,
                agent=agent,
                rule=rule,
                starts_at=data.get("starts_at"),
                ends_at=data["ends_at"],
                reason=data.get("reason", ""),
            )
        return Response(SilenceSerializer(silence).data, status=201)

    def destroy(self, request, *args, **kwargs):
        with service_errors():
            silence_delete(principal=self.principal, silence=self.get_object())
        return Response(status=204)


# --- deliveries -----------------------------------------------------------------------------------


class DeliverySerializer(serializers.ModelSerializer):
    """One notification of an alert to a channel; retried with backoff until sent or given up."""

    team = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "alert",
            "channel",
            "team",
            "event",
            "message_id",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


class DeliveryFilter(filters.FilterSet):
    channel = IdFilter(field_name="channel_id")
    alert = IdFilter(field_name="alert_id")
    status = filters.ChoiceFilter(choices=DeliveryStatus.choices)

    class Meta:
        model = Delivery
        fields = ["channel", "alert", "status"]


class DeliveryViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    """Notifications sent (or being retried, or given up) to channels, newest first: why a channel fails."""

    queryset = Delivery.objects.select_related("team")
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    pagination_class = AlertPage
    permission_classes = [ReadOrManageScope]
