"""Writes of the alerts: channels, rules, silences and acknowledgements (SPEC.md, "Alerts").

These functions are the only writers of those rows, for the API and the pages alike, so the rules hold
whichever door a change comes through: who may change what (`restrict(principal, "change")`: sre and
tech_lead of the team, admin and finops everywhere, `manage` tokens for their team; rows of no team only
by those who guard every team), what a rule of each kind needs, and an audit entry (who, before, after)
in the same transaction as the change. Bad input is a django ValidationError keyed by field name, which
the API answers as a 400 naming the field and a form shows beside it.

The evaluation engine writes alerts' states and the transport writes deliveries; neither is here."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from finops.accounts.models import Team
from finops.accounts.selectors import Principal, guarding_team_ids, principal_is_token
from finops.alerts.models import (
    Alert,
    AlertChannel,
    AlertRule,
    AlertState,
    ChannelKind,
    RuleKind,
    RuleOp,
    RuleWindow,
    Silence,
)
from finops.alerts.signing import webhook_secret_key, webhook_secret_new
from finops.audit.models import AuditAction
from finops.audit.services import audit_record
from finops.ledger.models import Agent
from finops.ledger.tokens import TOKEN_TYPES

# --- what a rule may watch ------------------------------------------------------------------------

# The numbers of GET /api/v1/kpis a threshold rule may watch, by their place in its answer (a nested
# number dotted: "tasks.failed", "tokens.output"), plus "tokens": the six token types summed.
THRESHOLD_METRICS: dict[str, str] = {
    "cost_usd": "spend in the window, USD",
    "calls": "LLM calls",
    "unpriced_calls": "calls of models with no price",
    "calls_not_in_task": "calls without a task_id",
    "tasks.ended": "tasks that ended",
    "tasks.successful": "successful tasks",
    "tasks.failed": "failed tasks",
    "tasks.abandoned": "abandoned tasks",
    "tasks.killed": "tasks stopped by a kill switch",
    "tasks.unpriced_calls": "unpriced calls of the ended tasks",
    "cost_per_successful_task_usd": "$ per successful task",
    "cache_hit_rate": "cache hit rate (0 to 1)",
    "token_efficiency_index": "token efficiency index (0 to 1)",
    "step_inflation_ratio": "step inflation ratio",
    "tokens": "all six token types, summed",
    **{f"tokens.{token_type}": f"{token_type} tokens" for token_type in TOKEN_TYPES},
}
# what a runaway_task rule counts of a running task
RUNAWAY_METRICS: dict[str, str] = {"cost_usd": "the task's spend, USD", "steps": "the task's LLM calls"}

# the fields each kind reads; the others must be left empty (a setting the kind ignores would mislead
# whoever reads the rule). `op` is read by threshold only: the other kinds all mean "over".
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    RuleKind.THRESHOLD: ("metric", "op", "value", "window"),
    RuleKind.FORECAST: ("value",),
    RuleKind.ANOMALY: ("value", "window"),
    RuleKind.RUNAWAY_TASK: ("metric", "value"),
    RuleKind.CACHE_COLLAPSE: ("value",),
    RuleKind.ALLOWANCE: (),
}
KIND_NAMES = {
    RuleKind.THRESHOLD: "a threshold rule",
    RuleKind.FORECAST: "a forecast rule",
    RuleKind.ANOMALY: "an anomaly rule",
    RuleKind.RUNAWAY_TASK: "a runaway_task rule",
    RuleKind.CACHE_COLLAPSE: "a cache_collapse rule",
    RuleKind.ALLOWANCE: "an allowance rule",
}
RULE_FIELDS = (
    "name",
    "team",
    "agent",
    "kind",
    "metric",
    "op",
    "value",
    "window",
    "for_minutes",
    "repeat_minutes",
    "enabled",
)
MINUTES_MAX = 525_600  # a year: for_minutes and repeat_minutes past it are typing mistakes
VALUE_MAX = Decimal("1e18")  # AlertRule.value holds 18 whole digits


# --- permissions ----------------------------------------------------------------------------------


def team_guardable(*, principal: Principal, team: Team | None) -> bool:
    """Whether the principal may change the alerting of `team` (None: the organisation's, which only
    those who guard every team may)."""
    team_ids = guarding_team_ids(principal=principal)
    if team_ids is None:
        return True
    return team is not None and team.pk in team_ids


def _require_guard(*, principal: Principal, team: Team | None, what: str) -> None:
    if not team_guardable(principal=principal, team=team):
        scope = f"team {team.slug!r}" if team is not None else "the organisation (no team)"
        raise PermissionDenied(f"you may not change the {what} of {scope}")


def _require_change(*, principal: Principal, row, what: str) -> None:
    if not type(row).objects.restrict(principal, "change").filter(pk=row.pk).exists():
        raise PermissionDenied(f"you may not change this {what}")


def _created_by(principal: Principal):
    return None if principal_is_token(principal) or principal is None else principal


def _audit(*, principal: Principal, row, object_type: str, action: str, before, after) -> None:
    audit_record(
        principal=principal,
        team_id=row.team_id,
        object_type=object_type,
        object_id=row.pk,
        action=action,
        before=before,
        after=after,
    )


# --- channels -------------------------------------------------------------------------------------

# What a channel's target and a webhook's secret must look like, as patterns the API's schema states too
# (so a client reads the same rule the server applies). A URL needs its scheme and a host; whether it
# answers shows in the channel's deliveries. Spaces are spelled out (\x00-\x20), never \s, whose
# meaning differs between regex engines.
URL_TARGET = r"^https?://[^\x00-\x20/?#]+[^\x00-\x20]*$"
EMAIL_TARGET = r"^[^\x00-\x20@]+@[^\x00-\x20@]+$"
# a name holds something other than spaces and control characters (and no NUL, which text cannot hold)
NAME_PATTERN = r"^[^\x00]*[^\x00-\x20][^\x00]*$"
_B64 = "[A-Za-z0-9+/]"
_B64_LAST = f"(?:{_B64}{{4}}|{_B64}{{3}}=|{_B64}{{2}}==)"
# `whsec_` + base64 of a 24 to 64 byte key (signing.webhook_secret_key): 8 to 22 groups of four
WEBHOOK_SECRET = (
    f"^whsec_(?:(?:{_B64}{{4}}){{8}}|(?:{_B64}{{4}}){{8,20}}{_B64_LAST}|(?:{_B64}{{4}}){{21}}{_B64}{{2}}==)$"
)


def secret_fingerprint(secret: str) -> str | None:
    """A short digest of a secret for the audit log: a rotation shows, the secret does not."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12] if secret else None


def channel_snapshot(channel: AlertChannel) -> dict[str, Any]:
    return {
        "team": channel.team.slug if channel.team_id else None,
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.target,
        "secret_fingerprint": secret_fingerprint(channel.secret),
    }


def channel_validate(*, kind: str, target: str, secret: str) -> None:
    errors: dict[str, list[str]] = {}
    if kind not in ChannelKind.values:
        errors["kind"] = [f"must be one of {', '.join(ChannelKind.values)}"]
    elif kind == ChannelKind.EMAIL:
        if not re.fullmatch(EMAIL_TARGET, target):
            errors["target"] = ["must be an email address (name@domain) for an email channel"]
    elif not re.fullmatch(URL_TARGET, target):
        errors["target"] = [f"must be an http:// or https:// URL with a host for a {kind} channel"]
    if len(target) > AlertChannel._meta.get_field("target").max_length:
        errors["target"] = ["must be at most 2048 characters"]
    if secret and kind in (ChannelKind.SLACK, ChannelKind.EMAIL):
        errors["secret"] = [f"a {kind} channel takes no secret: only webhook deliveries are signed"]
    elif secret:
        try:
            webhook_secret_key(secret)
        except ValueError as error:
            errors["secret"] = [str(error)]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def channel_create(
    *,
    principal: Principal,
    team: Team | None,
    kind: str,
    target: str,
    secret: str | None = None,
    name: str = "",
) -> tuple[AlertChannel, str | None]:
    """Create a channel and audit it. A webhook given no secret gets one (`whsec_` + base64), returned
    here and never again: the second value is that secret, or None when the caller chose it (or the
    kind is not signed)."""
    _require_guard(principal=principal, team=team, what="alert channels")
    secret = secret or ""
    channel_validate(kind=kind, target=target, secret=secret)
    shown_once = None
    if kind == ChannelKind.WEBHOOK and not secret:
        secret = shown_once = webhook_secret_new()
    channel = AlertChannel(
        team=team, kind=kind, target=target, secret=secret, name=name, created_by=_created_by(principal)
    )
    channel.full_clean(exclude=["created_by", "team"])
    channel.save()
    _audit(
        principal=principal,
        row=channel,
        object_type="alert_channel",
        action=AuditAction.CREATE,
        before=None,
        after=channel_snapshot(channel),
    )
    return channel, shown_once


CHANNEL_CHANGEABLE = ("name", "target", "secret")


@transaction.atomic
def channel_update(*, principal: Principal, channel: AlertChannel, **changes: Any) -> AlertChannel:
    """Change a channel's name, target or secret (a webhook's secret can be replaced, never removed) and
    audit it. Its kind and team stay: the rules using it chose it for them; make a new channel."""
    _require_change(principal=principal, row=channel, what="alert channel")
    errors = {}
    for name in ("kind", "team"):
        if name in changes and changes[name] != getattr(channel, name):
            errors[name] = [f"a channel keeps its {name}; create a new channel instead"]
        changes.pop(name, None)
    unknown = sorted(set(changes) - set(CHANNEL_CHANGEABLE))
    for name in unknown:
        errors[name] = ["is not a setting of a channel"]
    if errors:
        raise ValidationError(errors)
    if "secret" in changes:
        changes["secret"] = changes["secret"] or ""
        if channel.kind == ChannelKind.WEBHOOK and not changes["secret"]:
            raise ValidationError(
                {"secret": ["a webhook channel keeps a secret: give a new one to replace it"]}
            )
    before = channel_snapshot(channel)
    for name, value in changes.items():
        setattr(channel, name, value)
    channel_validate(kind=channel.kind, target=channel.target, secret=channel.secret)
    channel.full_clean(exclude=["created_by", "team"])
    channel.save()
    after = channel_snapshot(channel)
    if after != before:
        _audit(
            principal=principal,
            row=channel,
            object_type="alert_channel",
            action=AuditAction.UPDATE,
            before=before,
            after=after,
        )
    return channel


@transaction.atomic
def channel_delete(*, principal: Principal, channel: AlertChannel) -> None:
    """Delete a channel (its deliveries go with it) and audit it; rules that used it keep their others."""
    _require_change(principal=principal, row=channel, what="alert channel")
    _audit(
        principal=principal,
        row=channel,
        object_type="alert_channel",
        action=AuditAction.DELETE,
        before=channel_snapshot(channel),
        after=None,
    )
    channel.delete()


# --- rules ----------------------------------------------------------------------------------------


def rule_snapshot(rule: AlertRule, *, channel_ids: list[int] | None = None) -> dict[str, Any]:
    return {
        "name": rule.name,
        "team": rule.team.slug if rule.team_id else None,
        "agent": rule.agent.name if rule.agent_id else None,
        "kind": rule.kind,
        "metric": rule.metric,
        "op": rule.op,
        "value": None if rule.value is None else str(rule.value),
        "window": rule.window,
        "for_minutes": rule.for_minutes,
        "repeat_minutes": rule.repeat_minutes,
        "channels": sorted(rule.channels.values_list("pk", flat=True))
        if channel_ids is None
        else channel_ids,
        "enabled": rule.enabled,
    }


def rule_validate(*, rule: AlertRule) -> None:
    """What a rule of its kind needs, and nothing it would ignore; errors keyed by field."""
    errors: dict[str, list[str]] = {}
    kind = rule.kind
    if not re.fullmatch(NAME_PATTERN, rule.name or ""):
        errors["name"] = ["give the rule a name (more than spaces)"]
    if kind not in RuleKind.values:
        raise ValidationError({**errors, "kind": [f"must be one of {', '.join(RuleKind.values)}"]})
    reads, who = KIND_FIELDS[kind], KIND_NAMES[kind]
    if "metric" in reads:
        allowed = THRESHOLD_METRICS if kind == RuleKind.THRESHOLD else RUNAWAY_METRICS
        if not rule.metric:
            errors["metric"] = [f"{who} needs a metric: one of {', '.join(allowed)}"]
        elif rule.metric not in allowed:
            errors["metric"] = [f"{rule.metric!r} is not a metric of {who}: one of {', '.join(allowed)}"]
    elif rule.metric:
        errors["metric"] = [f"{who} takes no metric"]
    if rule.op not in RuleOp.values:
        errors["op"] = [f"must be one of {', '.join(RuleOp.values)}"]
    elif "op" not in reads and rule.op != RuleOp.GT:
        errors["op"] = [f"{who} only alerts over its value: op is gt"]
    if "value" in reads:
        if rule.value is None:
            errors["value"] = [f"{who} needs a value"]
        elif rule.value < 0:
            errors["value"] = ["must be 0 or more"]
        elif rule.value >= VALUE_MAX:
            errors["value"] = ["must be under 10^18"]
        elif kind == RuleKind.CACHE_COLLAPSE and rule.value > 1:
            errors["value"] = ["a cache_collapse rule's value is a drop in hit rate, from 0 to 1"]
        # a runaway rule's steps may be fractional ("over 12.5 steps" fires at 13): refusing them made a
        # PATCH of the value alone valid or not by the stored metric, which no schema can say
    elif rule.value is not None:
        errors["value"] = [f"{who} takes no value"]
    if "window" in reads:
        if not rule.window:
            errors["window"] = [f"{who} needs a window: one of {', '.join(RuleWindow.values)}"]
        elif rule.window not in RuleWindow.values:
            errors["window"] = [f"must be one of {', '.join(RuleWindow.values)}"]
    elif rule.window:
        errors["window"] = [f"{who} takes no window"]
    for name in ("for_minutes", "repeat_minutes"):
        minutes = getattr(rule, name)
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= MINUTES_MAX:
            errors[name] = [f"must be a whole number of minutes from 0 to {MINUTES_MAX}"]
    if rule.agent_id and not rule.team_id:
        errors["agent"] = ["an agent belongs to a team: give the rule its team"]
    elif rule.agent_id and rule.agent.team_id != rule.team_id:
        errors["agent"] = [f"agent {rule.agent.name!r} is not an agent of team {rule.team.slug!r}"]
    if errors:
        raise ValidationError(errors)


def _channels_check(
    *, principal: Principal, team: Team | None, channels, attached: list[AlertChannel] = ()
) -> list[AlertChannel]:
    """The rule's channels: each one the principal sees (or one already on the rule), and the rule's
    team's or the organisation's."""
    channels = list(channels)
    ids = {channel.pk if isinstance(channel, AlertChannel) else channel for channel in channels}
    found = {
        channel.pk: channel for channel in AlertChannel.objects.restrict(principal, "view").filter(pk__in=ids)
    }
    found.update({channel.pk: channel for channel in attached if channel.pk in ids})
    missing = sorted(str(pk) for pk in ids if pk not in found)
    if missing:
        raise ValidationError({"channels": [f"no channel {', '.join(missing)} that you may see"]})
    wrong = sorted(
        str(pk)
        for pk, channel in found.items()
        if channel.team_id is not None and channel.team_id != getattr(team, "pk", None)
    )
    if wrong:
        where = f"team {team.slug!r}" if team is not None else "the organisation"
        raise ValidationError(
            {
                "channels": [
                    f"channel {', '.join(wrong)} is another team's: a rule of {where} uses its own or the organisation's channels"
                ]
            }
        )
    return [found[pk] for pk in sorted(found)]


@transaction.atomic
def rule_create(*, principal: Principal, channels=(), **fields: Any) -> AlertRule:
    """Create a rule and audit it. `fields` are AlertRule's (team and agent as objects; team None: every
    team, for those who guard every team); `channels` are channels or their ids."""
    unknown = sorted(set(fields) - set(RULE_FIELDS))
    if unknown:
        raise ValidationError({name: ["is not a setting of a rule"] for name in unknown})
    team = fields.get("team")
    _require_guard(principal=principal, team=team, what="alert rules")
    rule = AlertRule(created_by=_created_by(principal), **fields)
    rule_validate(rule=rule)
    chosen = _channels_check(principal=principal, team=team, channels=channels)
    rule.full_clean(exclude=["created_by", "team", "agent"])
    rule.save()
    rule.channels.set(chosen)
    _audit(
        principal=principal,
        row=rule,
        object_type="alert_rule",
        action=AuditAction.CREATE,
        before=None,
        after=rule_snapshot(rule, channel_ids=[channel.pk for channel in chosen]),
    )
    return rule


@transaction.atomic
def rule_update(*, principal: Principal, rule: AlertRule, **changes: Any) -> AlertRule:
    """Change a rule and audit it. A new team must be one the principal guards too, and the rule's
    channels must suit it. Open alerts of the rule are the evaluator's: the next evaluation judges them
    by the new settings."""
    _require_change(principal=principal, row=rule, what="alert rule")
    unknown = sorted(set(changes) - set(RULE_FIELDS) - {"channels"})
    if unknown:
        raise ValidationError({name: ["is not a setting of a rule"] for name in unknown})
    before = rule_snapshot(rule)
    new_channels = changes.pop("channels", None)
    if "team" in changes and changes["team"] != rule.team:
        _require_guard(principal=principal, team=changes["team"], what="alert rules")
    for name, value in changes.items():
        setattr(rule, name, value)
    rule_validate(rule=rule)
    attached = list(rule.channels.all())
    if new_channels is not None:
        # a channel on the rule that the principal cannot see (the organisation's, put there by an
        # admin) stays: no one changes what they cannot see
        seen = set(
            AlertChannel.objects.restrict(principal, "view")
            .filter(pk__in=[channel.pk for channel in attached])
            .values_list("pk", flat=True)
        )
        hidden = [channel for channel in attached if channel.pk not in seen]
        chosen = _channels_check(
            principal=principal, team=rule.team, channels=[*new_channels, *hidden], attached=attached
        )
    else:
        # a rule moved to another team may not keep the old team's channels
        chosen = _channels_check(principal=principal, team=rule.team, channels=attached, attached=attached)
    rule.full_clean(exclude=["created_by", "team", "agent"])
    rule.save()
    if new_channels is not None:
        rule.channels.set(chosen)
    after = rule_snapshot(rule)
    if after != before:
        _audit(
            principal=principal,
            row=rule,
            object_type="alert_rule",
            action=AuditAction.UPDATE,
            before=before,
            after=after,
        )
    return rule


@transaction.atomic
def rule_delete(*, principal: Principal, rule: AlertRule) -> None:
    """Delete a rule and audit it; its alerts (and their deliveries) go with it."""
    _require_change(principal=principal, row=rule, what="alert rule")
    _audit(
        principal=principal,
        row=rule,
        object_type="alert_rule",
        action=AuditAction.DELETE,
        before=rule_snapshot(rule),
        after=None,
    )
    rule.delete()


# --- acknowledgement ------------------------------------------------------------------------------


def alert_snapshot(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule_id,
        "subject": alert.subject,
        "state": alert.state,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at,
    }


@transaction.atomic
def alert_acknowledge(*, principal: Principal, alert: Alert, now: datetime | None = None) -> Alert:
    """Acknowledge an open alert: someone is on it, so it is not notified again every repeat_minutes
    (it still notifies when it resolves). Audited. A resolved alert needs no one: acking it is an error;
    acking an acknowledged one changes nothing. A token acknowledges without a person to name, so
    acknowledged_by stays empty and the audit entry names the token."""
    _require_change(principal=principal, row=alert, what="alert")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == AlertState.RESOLVED:
        raise ValidationError({"state": ["the alert is resolved: there is nothing left to acknowledge"]})
    if alert.acknowledged_at is not None:
        return alert
    before = alert_snapshot(alert)
    alert.acknowledged_by = _created_by(principal)
    alert.acknowledged_at = now or timezone.now()
    alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    _audit(
        principal=principal,
        row=alert,
        object_type="alert",
        action=AuditAction.UPDATE,
        before=before,
        after=alert_snapshot(alert),
    )
    return alert


# --- silences -------------------------------------------------------------------------------------


def silence_snapshot(silence: Silence) -> dict[str, Any]:
    return {
        "team": silence.team.slug if silence.team_id else None,
        "agent": silence.agent.name if silence.agent_id else None,
        "rule": silence.rule_id,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "reason": silence.reason,
    }


@transaction.atomic
def silence_create(
    *,
    principal: Principal,
    ends_at: datetime,
    team: Team | None = None,
    agent: Agent | None = None,
    rule: AlertRule | None = None,
    starts_at: datetime | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> Silence:
    """Silence a rule, or a team (optionally one of its agents), from `starts_at` (default now) to
    `ends_at`; with none of them, everything (for those who guard every team). Audited. A rule's silence
    belongs to the rule's team, so the team sees it."""
    now = now or timezone.now()
    starts_at = starts_at or now
    errors: dict[str, list[str]] = {}
    if rule is not None:
        if team is not None and team.pk != rule.team_id:
            errors["team"] = ["a rule's silence is of the rule's team: leave team out"]
        if agent is not None:
            errors["agent"] = ["silence a rule, or a team's agent, not both"]
        if not AlertRule.objects.restrict(principal, "view").filter(pk=rule.pk).exists():
            errors["rule"] = [f"no rule {rule.pk} that you may see"]
        team = rule.team
    elif agent is not None:
        if team is None:
            errors["agent"] = ["an agent belongs to a team: give the team too"]
        elif agent.team_id != team.pk:
            errors["agent"] = [f"agent {agent.name!r} is not an agent of team {team.slug!r}"]
    if ends_at <= starts_at:
        errors["ends_at"] = ["must be after starts_at"]
    elif ends_at <= now:
        errors["ends_at"] = ["must be in the future: a silence that has ended silences nothing"]
    if len(reason) > Silence._meta.get_field("reason").max_length:
        errors["reason"] = ["must be at most 512 characters"]
    if errors:
        raise ValidationError(errors)
    _require_guard(principal=principal, team=team, what="silences")
    silence = Silence.objects.create(
        team=team,
        agent=agent,
        rule=rule,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=_created_by(principal),
    )
    _audit(
        principal=principal,
        row=silence,
        object_type="silence",
        action=AuditAction.CREATE,
        before=None,
        after=silence_snapshot(silence),
    )
    return silence


@transaction.atomic
def silence_delete(*, principal: Principal, silence: Silence, now: datetime | None = None) -> None:
    """End a silence now, and audit it. One that has started is kept, ended, as the record of when alerts
    were quiet; one that has not started yet silenced nothing and is removed."""
    _require_change(principal=principal, row=silence, what="silence")
    now = now or timezone.now()
    before = silence_snapshot(silence)
    if silence.starts_at >= now:
        after = None
        audited_pk = silence.pk
        silence.delete()
        silence.pk = audited_pk
    elif silence.ends_at > now:
        silence.ends_at = now
        silence.save(update_fields=["ends_at"])
        after = silence_snapshot(silence)
    else:
        return  # ended already: nothing changes
    _audit(
        principal=principal,
        row=silence,
        object_type="silence",
        action=AuditAction.DELETE,
        before=before,
        after=after,
    )
