"""The alerts pages: what is firing now (acknowledge it), what fired before, silences, failing channels,
one alert's story (the `url` of webhook payloads), and the rules and channels with their editor.

Every read goes through `restrict(principal, "view")` (another team's row is a 404, as in the API);
every write through finops.alerts.services, which checks `restrict(principal, "change")` and writes the
audit entry: a row seen but not changeable (a viewer's team's) is a 403 before the service is asked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import exports
from dashboard.alert_forms import ChannelForm, RuleForm, SilenceForm, errors_onto, rule_initial
from dashboard.tables import render_page
from finops.accounts.models import Team
from finops.accounts.selectors import guarding_team_ids
from finops.alerts import services
from finops.alerts.models import (
    Alert,
    AlertChannel,
    AlertRule,
    AlertState,
    Delivery,
    RuleKind,
    Silence,
)
from finops.alerts.selectors import (
    alerts_open,
    alerts_visible,
    channels_failing,
    channels_visible,
    rules_visible,
    silences_active,
)

PAST_PAGE_SIZE = 25


# --- who may do what ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guarding:
    """The teams whose alerting the person may change (guarding_team_ids, read once per request):
    `team_ids` None is every team, and the organisation's rows too. The same rule as
    GuardedQuerySet.restrict(principal, "change"), so a button is shown exactly where its POST is allowed."""

    team_ids: frozenset[int] | None

    @property
    def every(self) -> bool:
        return self.team_ids is None

    @property
    def any(self) -> bool:
        return self.team_ids is None or bool(self.team_ids)

    @property
    def teams(self):
        return Team.objects.all() if self.team_ids is None else Team.objects.filter(pk__in=self.team_ids)

    def may_change(self, row) -> bool:
        return self.team_ids is None or row.team_id in self.team_ids


def _guarding(principal) -> Guarding:
    team_ids = guarding_team_ids(principal=principal)
    return Guarding(team_ids=None if team_ids is None else frozenset(team_ids))


def _changeable(model, principal, pk: int):
    """The row if the principal may change it; 404 if it may not even see it, 403 if it only sees it."""
    row = get_object_or_404(model.objects.restrict(principal, "view"), pk=pk)
    if not model.objects.restrict(principal, "change").filter(pk=pk).exists():
        raise PermissionDenied(
            f"changing this {model._meta.verbose_name} needs the sre or tech_lead role of its team, "
            "or admin or finops"
        )
    return row


def _require_guarding(guarding: Guarding, what: str) -> None:
    if not guarding.any:
        raise PermissionDenied(f"{what} needs the sre or tech_lead role of a team, or admin or finops")


def team_filter(request) -> Team | None:
    """?team=slug: one of the person's teams, or a 404 (never a hint that another team exists)."""
    slug = (request.GET.get("team") or "").strip()
    if not slug:
        return None
    team = Team.objects.restrict(request.user).filter(slug=slug).first()
    if team is None:
        raise Http404("no such team")
    return team


# --- /alerts/ -------------------------------------------------------------------------------------


def _alerts_page(request, *, silence_form: SilenceForm | None = None, status: int = 200):
    principal = request.user
    team = team_filter(request)
    state = request.GET.get("state") or ""
    if state and state not in AlertState.values:
        raise Http404("no such state")
    guarding = _guarding(principal)
    open_alerts = alerts_open(principal=principal)
    past = alerts_visible(principal=principal).filter(state=AlertState.RESOLVED)
    silences = silences_active(principal=principal)
    if team is not None:
        open_alerts, past, silences = (
            open_alerts.filter(team=team),
            past.filter(team=team),
            silences.filter(team=team),
        )
    if state:
        open_alerts = open_alerts.filter(state=state)
        if state != AlertState.RESOLVED:
            past = past.none()
    past_page = Paginator(past.order_by("-resolved_at", "-id"), PAST_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    open_list = list(open_alerts)
    if silence_form is None and guarding.any:
        silence_form = _silence_form(principal, guarding)
    now = timezone.now()
    silence_rows = [
        {"silence": silence, "upcoming": silence.starts_at > now, "may_change": guarding.may_change(silence)}
        for silence in silences
    ]
    query = {key: value for key, value in (("team", team.slug if team else ""), ("state", state)) if value}
    return render_page(
        request,
        "dashboard/alerts.html",
        {
            "exports": {
                "open": exports.open_alerts_table(open_list),
                "past": exports.past_alerts_table(list(past_page.object_list)),
                "silences": exports.silences_table([row["silence"] for row in silence_rows]),
            },
            "team": team,
            "state": state,
            "states": AlertState.values,
            "team_options": list(Team.objects.restrict(principal)),
            "open_alerts": [
                {"alert": alert, "may_ack": guarding.may_change(alert) and alert.acknowledged_at is None}
                for alert in open_list
            ],
            "firing_count": sum(alert.state == AlertState.FIRING for alert in open_list),
            "past": past_page,
            "query": urlencode(query),
            "failing": list(channels_failing(principal=principal)),
            "silences": silence_rows,
            "silence_form": silence_form,
            "has_rules": rules_visible(principal=principal).exists(),
            "may_guard": guarding.any,
            "now": now,
        },
        page="alerts",
        status=status,
    )


def _silence_form(principal, guarding: Guarding, data=None) -> SilenceForm:
    return SilenceForm(
        data,
        teams=guarding.teams,
        every_team=guarding.every,
        rules=AlertRule.objects.restrict(principal, "change").select_related("team"),
    )


@login_required
@require_GET
def alerts(request):
    return _alerts_page(request)


def _back(request, default: str) -> str:
    """Where a form posted from one of these pages returns: its `next`, if it is a page of this site."""
    target = request.POST.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


@login_required
@require_POST
def alert_acknowledge(request, alert_id: int):
    alert = _changeable(Alert, request.user, alert_id)
    try:
        services.alert_acknowledge(principal=request.user, alert=alert)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request, f"Alert {alert.pk} acknowledged: it will not be notified again until it resolves."
        )
    return redirect(_back(request, reverse("dashboard:alert-detail", args=[alert.pk])))


@login_required
@require_POST
def silence_create(request):
    principal = request.user
    guarding = _guarding(principal)
    _require_guarding(guarding, "silencing alerts")
    form = _silence_form(principal, guarding, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            silence = services.silence_create(
                principal=principal,
                rule=data["rule"],
                team=data["team"],
                agent=data["agent"],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                reason=data["reason"],
            )
        except ValidationError as error:
            errors_onto(form, error)
        else:
            messages.success(
                request, f"Silence {silence.pk} added, until {silence.ends_at:%Y-%m-%d %H:%M} UTC."
            )
            return redirect("dashboard:alerts")
    return _alerts_page(request, silence_form=form)


@login_required
@require_POST
def silence_expire(request, silence_id: int):
    silence = _changeable(Silence, request.user, silence_id)
    services.silence_delete(principal=request.user, silence=silence)
    messages.success(request, f"Silence {silence_id} ended.")
    return redirect("dashboard:alerts")


# --- /alerts/<id>/ --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    at: datetime
    what: str


def alert_timeline(*, alert: Alert, deliveries: list[Delivery]) -> list[Moment]:
    """What happened to the alert, in order: started, fired, each notification, acknowledged, resolved."""
    moments = [Moment(alert.started_at, "started (condition first held)")]
    if alert.fired_at:
        moments.append(Moment(alert.fired_at, "fired"))
    for delivery in deliveries:
        where = delivery.channel.label
        if delivery.sent_at:
            moments.append(Moment(delivery.sent_at, f"notified {where} ({delivery.event})"))
        else:
            moments.append(
                Moment(delivery.created_at, f"notification to {where} {delivery.get_status_display()}")
            )
    if alert.acknowledged_at:
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by_id else "an API token"
        moments.append(Moment(alert.acknowledged_at, f"acknowledged by {who}"))
    if alert.resolved_at:
        moments.append(Moment(alert.resolved_at, "resolved"))
    return sorted(moments, key=lambda moment: moment.at)


@login_required
@require_GET
def alert_detail(request, alert_id: int):
    alert = get_object_or_404(
        alerts_visible(principal=request.user).select_related("rule__agent", "rule__team"), pk=alert_id
    )
    deliveries = list(
        Delivery.objects.restrict(request.user, "view")
        .filter(alert=alert)
        .select_related("channel")
        .order_by("created_at", "id")
    )
    may_ack = (
        alert.state != AlertState.RESOLVED
        and alert.acknowledged_at is None
        and Alert.objects.restrict(request.user, "change").filter(pk=alert.pk).exists()
    )
    return render_page(
        request,
        "dashboard/alert_detail.html",
        {
            "alert": alert,
            "rule": alert.rule,
            "deliveries": deliveries,
            "deliveries_export": exports.deliveries_table(deliveries),
            "timeline": alert_timeline(alert=alert, deliveries=deliveries),
            "may_ack": may_ack,
        },
        page=f"alert-{alert.pk}",
    )


# --- /alerts/rules/ -------------------------------------------------------------------------------


def _rule_form(principal, guarding: Guarding, data=None, initial=None) -> RuleForm:
    return RuleForm(
        data,
        initial=initial,
        teams=guarding.teams,
        every_team=guarding.every,
        channels=AlertChannel.objects.restrict(principal, "change").select_related("team"),
    )


def _channel_form(guarding: Guarding, data=None) -> ChannelForm:
    return ChannelForm(data, teams=guarding.teams, every_team=guarding.every)


def _rules_page(request, *, rule_form=None, channel_form=None, created_channel=None, secret=None, status=200):
    principal = request.user
    guarding = _guarding(principal)
    rules = list(rules_visible(principal=principal))
    channels = list(channels_visible(principal=principal))
    if guarding.any:
        rule_form = rule_form or _rule_form(principal, guarding)
        channel_form = channel_form or _channel_form(guarding)
    return render_page(
        request,
        "dashboard/rules.html",
        {
            "exports": {
                "rules": exports.rules_table(rules),
                "channels": exports.channels_table(
                    channels, changeable={channel.pk for channel in channels if guarding.may_change(channel)}
                ),
            },
            "rules": [{"rule": rule, "may_change": guarding.may_change(rule)} for rule in rules],
            "channels": [
                {"channel": channel, "may_change": guarding.may_change(channel)} for channel in channels
            ],
            "rule_form": rule_form,
            "channel_form": channel_form,
            "created_channel": created_channel,
            "secret": secret,
            "may_guard": guarding.any,
            "kinds": RuleKind.choices,
        },
        page="rules",
        status=status,
    )


def _rule_save(request, *, rule: AlertRule | None):
    """Create (rule None) or update a rule from the posted form: the form back with the service's
    errors beside its fields, or None when it is saved."""
    principal = request.user
    guarding = _guarding(principal)
    form = _rule_form(principal, guarding, request.POST)
    if not form.is_valid():
        return form, None
    fields = form.rule_fields()
    try:
        if rule is None:
            channels = fields.pop("channels")
            saved = services.rule_create(principal=principal, channels=channels, **fields)
        else:
            saved = services.rule_update(principal=principal, rule=rule, **fields)
    except ValidationError as error:
        errors_onto(form, error)
        return form, None
    return form, saved


@login_required
@require_http_methods(["GET", "POST"])
def rules(request):
    if request.method == "POST":
        _require_guarding(_guarding(request.user), "adding an alert rule")
        form, saved = _rule_save(request, rule=None)
        if saved is not None:
            messages.success(request, f"Rule {saved.pk} ({saved.name}) added.")
            return redirect("dashboard:rules")
        return _rules_page(request, rule_form=form)
    return _rules_page(request)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, rule_id: int):
    principal = request.user
    rule = get_object_or_404(rules_visible(principal=principal), pk=rule_id)
    may_change = AlertRule.objects.restrict(principal, "change").filter(pk=rule.pk).exists()
    form = None
    if request.method == "POST":
        if not may_change:
            raise PermissionDenied(
                "changing this alert rule needs the sre or tech_lead role of its team, or admin or finops"
            )
        form, saved = _rule_save(request, rule=rule)
        if saved is not None:
            messages.success(request, f"Rule {saved.pk} ({saved.name}) saved.")
            return redirect("dashboard:rule-edit", rule_id=saved.pk)
        rule.refresh_from_db()
    elif may_change:
        form = _rule_form(principal, _guarding(principal), initial=rule_initial(rule))
    recent = list(alerts_visible(principal=principal).filter(rule=rule).order_by("-started_at", "-id")[:20])
    return render(
        request,
        "dashboard/rule_edit.html",
        {"rule": rule, "form": form, "may_change": may_change, "recent": recent},
    )


@login_required
@require_POST
def rule_enabled(request, rule_id: int):
    rule = _changeable(AlertRule, request.user, rule_id)
    enabled = request.POST.get("enabled") == "on"
    services.rule_update(principal=request.user, rule=rule, enabled=enabled)
    messages.success(request, f"Rule {rule.pk} ({rule.name}) {'enabled' if enabled else 'disabled'}.")
    return redirect(_back(request, reverse("dashboard:rules")))


@login_required
@require_POST
def rule_remove(request, rule_id: int):
    rule = _changeable(AlertRule, request.user, rule_id)
    name = rule.name
    services.rule_delete(principal=request.user, rule=rule)
    messages.success(request, f"Rule {rule_id} ({name}) deleted, with its alerts.")
    return redirect("dashboard:rules")


@login_required
@require_POST
def channel_create(request):
    principal = request.user
    guarding = _guarding(principal)
    _require_guarding(guarding, "adding an alert channel")
    form = _channel_form(guarding, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            channel, secret = services.channel_create(
                principal=principal,
                team=data["team"],
                kind=data["kind"],
                target=data["target"],
                secret=data["secret"] or None,
                name=data["name"],
            )
        except ValidationError as error:
            errors_onto(form, error)
        else:
            # the secret is shown in this answer only: never stored in a message, never redirected with
            return _rules_page(request, created_channel=channel, secret=secret)
    return _rules_page(request, channel_form=form)


@login_required
@require_POST
def channel_remove(request, channel_id: int):
    channel = _changeable(AlertChannel, request.user, channel_id)
    services.channel_delete(principal=request.user, channel=channel)
    messages.success(request, f"Channel {channel_id} deleted.")
    return redirect("dashboard:rules")
