"""The Guardrails page: allowances with their live usage and time to reset, a form to add one (sre,
tech_lead, admin, finops), delete, and the audit log of the teams you see."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from finops.accounts.models import Team
from finops.accounts.selectors import guarding_team_ids
from finops.audit.models import AuditEntry
from finops.guardrails.models import Allowance, AllowanceAction, AllowanceWindow
from finops.guardrails.selectors import allowances_live
from finops.guardrails.services import allowance_create, allowance_delete
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


def _bar(used, limit) -> int | None:
    return None if not limit else min(100, int(used * 100 / limit))


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
            limit_usd=data["limit_usd"],
            limit_tokens=data["limit_tokens"],
            warn_at=data["warn_at"],
            action=data["action"],
        )
        messages.success(request, f"Allowance {allowance.pk} added.")
        return redirect("dashboard:guardrails")
    allowances = list(Allowance.objects.restrict(principal, "view").select_related("team", "agent"))
    live = allowances_live(allowances=allowances)
    now = timezone.now()
    rows = [
        {
            "allowance": allowance,
            "live": live[allowance.pk],
            "usd_bar": _bar(
                live[allowance.pk].used_usd + live[allowance.pk].reserved_usd, allowance.limit_usd
            ),
            "tokens_bar": _bar(live[allowance.pk].used_tokens, allowance.limit_tokens),
            "resets_in": live[allowance.pk].resets_at - now,
            "may_change": guarding is None or allowance.team_id in guarding,
        }
        for allowance in allowances
    ]
    audit = AuditEntry.objects.restrict(principal, "view").select_related("team")[:50]
    return render(
        request,
        "dashboard/guardrails.html",
        {"rows": rows, "form": form if guarded_teams.exists() else None, "audit": audit},
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
