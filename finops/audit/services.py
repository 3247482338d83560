"""Writes to the audit log."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from finops.accounts.selectors import Principal, principal_is_authenticated, principal_is_token
from finops.audit.models import AuditEntry


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # decimals and datetimes as text, exactly as the API shows them
    return None if value is None else json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_record(
    *,
    principal: Principal,
    team_id: int | None,
    object_type: str,
    object_id: Any,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    """Record one change, in the caller's transaction (a change rolled back leaves no entry)."""
    user = token = None
    if principal_is_token(principal):
        token, who = principal, f"token {principal.name} ({principal.prefix}…)"
    elif principal_is_authenticated(principal):
        user, who = principal, principal.get_username()
    else:
        who = "system"
    return AuditEntry.objects.create(
        user=user,
        token=token,
        who=who,
        team_id=team_id,
        object_type=object_type,
        object_id=str(object_id),
        action=action,
        before=_jsonable(before),
        after=_jsonable(after),
    )
