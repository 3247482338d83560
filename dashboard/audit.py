"""The audit log page: who changed which setting, when, and what it was before and after, as a diff a
person reads (only the fields that changed, for an update), filtered by team and object type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.views.decorators.http import require_GET

from dashboard import exports
from dashboard.alerts import team_filter
from dashboard.tables import render_page
from finops.accounts.models import Team
from finops.audit.models import AuditAction, AuditEntry

AUDIT_PAGE_SIZE = 50
OBJECT_TYPES = {
    "allowance": "allowances",
    "agent": "agents (kill switches, settings)",
    "alert_rule": "alert rules",
    "alert_channel": "alert channels",
    "alert": "alerts (acknowledgements)",
    "silence": "silences",
    "model_tier": "model tiers (organisation-wide)",
    "price_override": "price overrides (organisation-wide)",
    "discount": "negotiated discounts (organisation-wide)",
}


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None  # None: the field was not there (a creation)
    after: str | None  # None: the field is gone (a deletion)


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


def _same(before: Any, after: Any) -> bool:
    """Equal values, and equal amounts written differently ("5.000000" and "5": a value given by a
    client before the database rounded it to its six places)."""
    if before == after:
        return True
    if isinstance(before, str) and isinstance(after, str):
        try:
            return Decimal(before) == Decimal(after)
        except (InvalidOperation, ValueError):
            return False
    return False


def audit_changes(entry: AuditEntry) -> list[Change]:
    """The fields of the entry as before → after: for an update only those that changed; for a creation
    every field it was created with; for a deletion every field it had."""
    before = entry.before if isinstance(entry.before, dict) else {}
    after = entry.after if isinstance(entry.after, dict) else {}
    changes = []
    for name in [*before, *(key for key in after if key not in before)]:
        if (
            entry.action == AuditAction.UPDATE
            and name in before
            and name in after
            and _same(before[name], after[name])
        ):
            continue
        changes.append(
            Change(
                field=name,
                before=_text(before.get(name)) if name in before else None,
                after=_text(after.get(name)) if name in after else None,
            )
        )
    return changes


@login_required
@require_GET
def audit(request):
    team = team_filter(request)
    object_type = (request.GET.get("object_type") or "").strip()
    entries = AuditEntry.objects.restrict(request.user, "view").select_related("team")
    if team is not None:
        entries = entries.filter(team=team)
    if object_type:
        if "\x00" in object_type:
            raise Http404("no such object type")
        entries = entries.filter(object_type=object_type)
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"entry": entry, "changes": audit_changes(entry)} for entry in page.object_list]
    query = urlencode(
        {
            key: value
            for key, value in (("team", team.slug if team else ""), ("object_type", object_type))
            if value
        }
    )
    return render_page(
        request,
        "dashboard/audit.html",
        {
            "audit_export": exports.audit_table(rows),
            "rows": rows,
            "page": page,
            "team": team,
            "object_type": object_type,
            "object_types": OBJECT_TYPES,
            "team_options": list(Team.objects.restrict(request.user)),
            "query": query,
        },
        page="audit",
    )
