"""The forms of the alerts pages. They only read and check what a person typed; the services
(finops.alerts.services) decide what is allowed and write it, and their ValidationErrors, keyed by field
name, are put back beside the form's fields by `errors_onto`."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from finops.accounts.models import Team
from finops.alerts.models import AlertChannel, AlertRule, ChannelKind, RuleKind, RuleOp, RuleWindow
from finops.alerts.services import KIND_FIELDS, RUNAWAY_METRICS, THRESHOLD_METRICS
from finops.ledger.models import Agent

MICRO = Decimal("0.000001")
EVERY_TEAM = "every team (organisation)"
# what each field of a rule means for the kinds that read it, shown beside the field
KIND_HELP = {
    "metric": "threshold: a KPI (cost_usd, cache_hit_rate, tokens, …); runaway task: cost_usd or steps",
    "op": "threshold only: alert when the metric is greater or less than the value",
    "value": "threshold: the line; forecast: month-end $; anomaly: × baseline; runaway: $ or steps; "
    "cache collapse: drop in hit rate (0–1)",
    "window": "threshold and anomaly: the span the metric is measured over",
}
METRIC_CHOICES = [
    ("", "—"),
    (
        "Threshold (a KPI over the window)",
        [(name, f"{name}: {text}") for name, text in THRESHOLD_METRICS.items()],
    ),
    (
        "Runaway task",
        [(f"runaway:{name}", f"{name}: {text}") for name, text in RUNAWAY_METRICS.items()],
    ),
]


def errors_onto(form: forms.Form, error: ValidationError) -> None:
    """A service's ValidationError beside the fields it names; the rest above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)


class TeamChoiceMixin:
    """A `team` field offering the teams the person may guard; an empty choice (the organisation)
    only for those who guard every team."""

    def team_choices(self, *, teams, every_team: bool) -> None:
        field = self.fields["team"]
        field.queryset = teams
        field.required = not every_team
        field.empty_label = EVERY_TEAM if every_team else None


class RuleForm(TeamChoiceMixin, forms.Form):
    name = forms.CharField(max_length=128)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="slug")
    agent = forms.CharField(required=False, max_length=128, help_text="empty: every agent of the team")
    kind = forms.ChoiceField(choices=RuleKind.choices)
    metric = forms.ChoiceField(required=False, choices=METRIC_CHOICES, help_text=KIND_HELP["metric"])
    op = forms.ChoiceField(choices=RuleOp.choices, initial=RuleOp.GT, help_text=KIND_HELP["op"])
    value = forms.DecimalField(required=False, max_digits=24, decimal_places=6, help_text=KIND_HELP["value"])
    window = forms.ChoiceField(
        required=False, choices=[("", "—"), *RuleWindow.choices], help_text=KIND_HELP["window"]
    )
    for_minutes = forms.IntegerField(
        min_value=0, initial=0, help_text="how long the condition must hold before it fires"
    )
    repeat_minutes = forms.IntegerField(
        min_value=0, initial=240, help_text="notify again while firing and unacknowledged"
    )
    channels = forms.ModelMultipleChoiceField(
        queryset=AlertChannel.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, teams, every_team: bool, channels, **kwargs):
        super().__init__(*args, **kwargs)
        self.team_choices(teams=teams, every_team=every_team)
        self.fields["channels"].queryset = channels
        self.fields["channels"].label_from_instance = lambda channel: (
            f"{channel.name or channel.target} ({channel.kind}, {channel.team.slug if channel.team_id else 'org'})"
        )
        self.fields["kind"].widget.attrs["data-rule-kind"] = ""
        # the fields only some kinds read: rules.js shows those of the chosen kind
        self.kind_fields = set(KIND_HELP)
        self.kind_reads = {kind: list(fields) for kind, fields in KIND_FIELDS.items()}

    def clean(self):
        data = super().clean()
        kind, metric = data.get("kind"), data.get("metric") or ""
        if kind == RuleKind.RUNAWAY_TASK and metric and not metric.startswith("runaway:"):
            self.add_error("metric", f"a runaway_task rule counts {' or '.join(RUNAWAY_METRICS)}")
        elif kind == RuleKind.THRESHOLD and metric.startswith("runaway:"):
            self.add_error("metric", "a threshold rule watches a KPI, not a task's count")
        team, agent_name = data.get("team"), (data.get("agent") or "").strip()
        data["agent"] = None
        if agent_name:
            if team is None:
                self.add_error("agent", "an agent belongs to a team: choose the team too")
            else:
                data["agent"] = Agent.objects.filter(team=team, name=agent_name).first()
                if data["agent"] is None:
                    self.add_error("agent", f"team {team.slug!r} has no agent {agent_name!r}")
        return data

    def rule_fields(self) -> dict:
        """The rule's settings for rule_create/rule_update: the kind's own fields, the others left as a
        rule that ignores them has them (so a field hidden for this kind never trips the service)."""
        data = self.cleaned_data
        reads = KIND_FIELDS[data["kind"]]
        metric = (data.get("metric") or "").removeprefix("runaway:")
        return {
            "name": data["name"],
            "team": data.get("team"),
            "agent": data.get("agent"),
            "kind": data["kind"],
            "metric": metric if "metric" in reads else "",
            "op": data["op"] if "op" in reads else RuleOp.GT,
            "value": _stored(data.get("value")) if "value" in reads else None,
            "window": data.get("window") or "" if "window" in reads else "",
            "for_minutes": data["for_minutes"],
            "repeat_minutes": data["repeat_minutes"],
            "enabled": data["enabled"],
            "channels": list(data["channels"]),
        }


def _stored(value: Decimal | None) -> Decimal | None:
    """The value as the database keeps it (six places), so the audit's before and after read alike."""
    return None if value is None else value.quantize(MICRO)


def rule_initial(rule: AlertRule) -> dict:
    return {
        "name": rule.name,
        "team": rule.team.slug if rule.team_id else None,
        "agent": rule.agent.name if rule.agent_id else "",
        "kind": rule.kind,
        "metric": f"runaway:{rule.metric}"
        if rule.kind == RuleKind.RUNAWAY_TASK and rule.metric
        else rule.metric,
        "op": rule.op,
        "value": None if rule.value is None else format(rule.value.normalize(), "f"),
        "window": rule.window,
        "for_minutes": rule.for_minutes,
        "repeat_minutes": rule.repeat_minutes,
        "channels": list(rule.channels.all()),
        "enabled": rule.enabled,
    }


class ChannelForm(TeamChoiceMixin, forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="slug")
    name = forms.CharField(required=False, max_length=128)
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    target = forms.CharField(max_length=2048, help_text="the URL (webhook, Slack) or the email address")
    secret = forms.CharField(
        required=False,
        max_length=256,
        help_text="webhook only; empty: one is generated (whsec_…) and shown once",
        widget=forms.PasswordInput(render_value=False),
    )

    def __init__(self, *args, teams, every_team: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.team_choices(teams=teams, every_team=every_team)


class SilenceForm(TeamChoiceMixin, forms.Form):
    rule = forms.ModelChoiceField(
        queryset=AlertRule.objects.none(), required=False, empty_label="— (a team, or everything)"
    )
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="slug")
    agent = forms.CharField(required=False, max_length=128, help_text="with a team: only its agent")
    starts_at = forms.DateTimeField(
        required=False,
        help_text="UTC; empty: now",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    ends_at = forms.DateTimeField(
        help_text="UTC", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    reason = forms.CharField(required=False, max_length=512)

    def __init__(self, *args, teams, every_team: bool, rules, **kwargs):
        super().__init__(*args, **kwargs)
        self.team_choices(teams=teams, every_team=every_team)
        # a rule's silence is of the rule's team: the team is not asked then
        self.fields["team"].required = False
        if not every_team:
            self.fields["team"].empty_label = "— (the rule's)"
        self.fields["rule"].queryset = rules
        self.fields["rule"].label_from_instance = lambda rule: (
            f"{rule.name} ({rule.team.slug if rule.team_id else 'every team'})"
        )
        self.every_team = every_team

    def clean(self):
        data = super().clean()
        if data.get("rule") is not None:
            data["team"] = None  # the rule's own
            if (data.get("agent") or "").strip():
                self.add_error("agent", "silence a rule, or a team's agent, not both")
                data["agent"] = ""
        team, agent_name = data.get("team"), (data.get("agent") or "").strip()
        if data.get("rule") is None and team is None and not self.every_team and not self.errors:
            self.add_error("team", "choose a rule or a team to silence")
        data["agent"] = None
        if agent_name:
            if team is None:
                self.add_error("agent", "an agent belongs to a team: choose the team too")
            else:
                data["agent"] = Agent.objects.filter(team=team, name=agent_name).first()
                if data["agent"] is None:
                    self.add_error("agent", f"team {team.slug!r} has no agent {agent_name!r}")
        return data
