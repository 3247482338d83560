"""The Guardrails page: allowances with their live usage and time to reset, a form to add one (sre,
tech_lead, admin, finops), delete, and the audit log of the teams you see."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import exports
from dashboard.alert_forms import MICRO, errors_onto
from dashboard.audit import audit_changes
from dashboard.tables import render_page
from finops.accounts.models import Team
from finops.accounts.selectors import guarding_team_ids
from finops.audit.models import AuditEntry
from finops.guardrails.models import Allowance, AllowanceAction, AllowanceWindow
from finops.guardrails.selectors import AllowanceLive, allowances_live
from finops.guardrails.services import allowance_create, allowance_delete, allowance_update
from finops.ledger.services import agent_get_or_create


class AllowanceForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="slug")
    agent = forms.CharField(required=False, max_length=128, help_text="empty: the whole team")
    window = forms.ChoiceField(choices=AllowanceWindow.choices)
    limit_usd = forms.DecimalField(required=False, min_value=Decimal(0), max_digits=18, decimal_places=6)
    limit_tokens = forms.IntegerField(required=False, min_value=0)
    warn_at = forms.FloatField(min_value=0, max_value=1, initial=0.8)
    action = forms.ChoiceField(choices=AllowanceAction.choices, initial=AllowanceAction.DENY)

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams

    def clean(self):
        data = super().clean()
        if data.get("limit_usd") is None and data.get("limit_tokens") is None:
            raise ValidationError("Give a dollar limit, a token limit, or both.")
        return data


@dataclass(frozen=True)
class Bar:
    """A usage bar: used and reserved as percents of the limit (together at most 100, as drawn), and
    the warn_at mark; `over` when used + reserved reach the limit."""

    used: int
    reserved: int
    warn_at: int
    over: bool


def _bar(*, used, reserved, limit, warn_at: float) -> Bar | None:
    if limit is None:
        return None
    if not limit:
        return Bar(used=100 if used else 0, reserved=0, warn_at=0, over=bool(used or reserved))
    used_percent = min(100, int(used * 100 / limit))
    reserved_percent = min(100 - used_percent, int((used + reserved) * 100 / limit) - used_percent)
    return Bar(
        used=used_percent,
        reserved=max(0, reserved_percent),
        warn_at=min(100, round(warn_at * 100)),
        over=used + reserved >= limit,
    )


def _row(allowance: Allowance, live: AllowanceLive, *, may_change: bool) -> dict:
    now = timezone.now()
    return {
        "allowance": allowance,
        "live": live,
        "usd_bar": _bar(
            used=live.used_usd,
            reserved=live.reserved_usd,
            limit=allowance.limit_usd,
            warn_at=allowance.warn_at,
        ),
        "tokens_bar": _bar(
            used=live.used_tokens,
            reserved=live.reserved_tokens,
            limit=allowance.limit_tokens,
            warn_at=allowance.warn_at,
        ),
        "resets_in": live.resets_at - now,
        "as_of": now,
        "may_change": may_change,
    }


@login_required
@require_http_methods(["GET", "POST"])
def guardrails(request):
    principal = request.user
    guarding = guarding_team_ids(principal=principal)
    guarded_teams = Team.objects.all() if guarding is None else Team.objects.filter(pk__in=guarding)
    if request.method == "POST" and not guarded_teams.exists():
        raise PermissionDenied(
            "adding an allowance needs the sre or tech_lead role of a team, or admin or finops"
        )
    form = AllowanceForm(request.POST or None, teams=guarded_teams)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        agent = agent_get_or_create(team=data["team"], name=data["agent"]) if data["agent"] else None
        allowance = allowance_create(
            principal=principal,
            created_by=principal,
            team=data["team"],
            agent=agent,
            window=data["window"],
            limit_usd=None if data["limit_usd"] is None else data["limit_usd"].quantize(MICRO),
            limit_tokens=data["limit_tokens"],
            warn_at=data["warn_at"],
            action=data["action"],
        )
        messages.success(request, f"Allowance {allowance.pk} added.")
        return redirect("dashboard:guardrails")
    allowances = list(Allowance.objects.restrict(principal, "view").select_related("team", "agent"))
    live = allowances_live(allowances=allowances)
    rows = [
        _row(allowance, live[allowance.pk], may_change=guarding is None or allowance.team_id in guarding)
        for allowance in allowances
    ]
    audit = [
        {"entry": entry, "changes": audit_changes(entry)}
        for entry in AuditEntry.objects.restrict(principal, "view").select_related("team")[:20]
    ]
    return render_page(
        request,
        "dashboard/guardrails.html",
        {
            "exports": {"allowances": exports.allowances_table(rows), "audit": exports.audit_table(audit)},
            "rows": rows,
            "form": form if guarded_teams.exists() else None,
            "rows_audit": audit,
            "now": timezone.now(),
        },
        page="guardrails",
    )


@login_required
@require_POST
def allowance_remove(request, allowance_id: int):
    # one you cannot see is a 404; one you see but may not change (a viewer's team's) a 403, as in the API
    allowance = get_object_or_404(Allowance.objects.restrict(request.user, "view"), pk=allowance_id)
    if not Allowance.objects.restrict(request.user, "change").filter(pk=allowance.pk).exists():
        raise PermissionDenied(
            "deleting an allowance needs the sre or tech_lead role of its team, or admin or finops"
        )
    allowance_delete(principal=request.user, allowance=allowance)
    messages.success(request, f"Allowance {allowance_id} deleted.")
    return redirect("dashboard:guardrails")


def _allowance_initial(allowance: Allowance) -> dict:
    return {
        "team": allowance.team.slug,
        "agent": allowance.agent.name if allowance.agent_id else "",
        "window": allowance.window,
        "limit_usd": allowance.limit_usd,
        "limit_tokens": allowance.limit_tokens,
        "warn_at": allowance.warn_at,
        "action": allowance.action,
    }


@login_required
@require_http_methods(["GET", "POST"])
def allowance_edit(request, allowance_id: int):
    """One allowance: its live usage, and its settings in a form for those who may change it (the
    changes audited by allowance_update; a new scope or window is counted again from the ledger)."""
    principal = request.user
    allowance = get_object_or_404(
        Allowance.objects.restrict(principal, "view").select_related("team", "agent"), pk=allowance_id
    )
    may_change = Allowance.objects.restrict(principal, "change").filter(pk=allowance.pk).exists()
    if request.method == "POST" and not may_change:
        raise PermissionDenied(
            "changing an allowance needs the sre or tech_lead role of its team, or admin or finops"
        )
    guarding = guarding_team_ids(principal=principal)
    guarded_teams = Team.objects.all() if guarding is None else Team.objects.filter(pk__in=guarding)
    form = None
    if may_change:
        form = AllowanceForm(request.POST or None, teams=guarded_teams, initial=_allowance_initial(allowance))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        agent = agent_get_or_create(team=data["team"], name=data["agent"]) if data["agent"] else None
        changes = {name: data[name] for name in ("team", "window", "limit_tokens", "warn_at", "action")}
        # as the database keeps it (six places), so the audit's before and after read alike
        changes["limit_usd"] = None if data["limit_usd"] is None else data["limit_usd"].quantize(MICRO)
        try:
            allowance_update(principal=principal, allowance=allowance, changes={**changes, "agent": agent})
        except ValidationError as error:
            errors_onto(form, error)
        else:
            messages.success(request, f"Allowance {allowance.pk} saved.")
            return redirect("dashboard:guardrails")
        allowance.refresh_from_db()
    live = allowances_live(allowances=[allowance])[allowance.pk]
    return render(
        request,
        "dashboard/allowance.html",
        {"row": _row(allowance, live, may_change=may_change), "form": form},
    )
