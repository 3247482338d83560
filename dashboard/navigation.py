"""The main navigation: each page once, offered only to the roles that may use it (SPEC.md, roles).

A page of the dashboard adds its one entry to NAV; base.html draws the entries the signed-in person's
roles allow, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

from finops.accounts.models import Membership

EVERYONE = None
ORG_ROLES = frozenset({"admin", "finops"})
WRITERS = frozenset({"admin", "finops", "sre", "tech_lead", "pm", "ml"})  # every role but viewer
GUARDS = frozenset({"admin", "finops", "sre", "tech_lead"})


@dataclass(frozen=True)
class NavItem:
    url_name: str
    label: str
    roles: frozenset[str] | None = EVERYONE  # shown to a person holding any of these roles
    badge: str | None = None  # the name of a live count beside the label (see nav_context)


NAV: list[NavItem] = [
    NavItem("dashboard:overview", "Overview"),
    NavItem("dashboard:models", "Models"),
    NavItem("dashboard:caching", "Caching"),
    NavItem("dashboard:guardrails", "Guardrails"),
    NavItem("dashboard:alerts", "Alerts", badge="firing"),
    NavItem("dashboard:rules", "Rules"),
    NavItem("dashboard:audit", "Audit"),
    NavItem("dashboard:breakdown", "Breakdown"),
    NavItem("dashboard:forecast", "Forecast"),
    NavItem("ingest:upload", "Import", roles=WRITERS),
    NavItem("ingest:quarantine", "Quarantine"),
    NavItem("connectors:status", "Connectors", roles=ORG_ROLES),
]


def user_roles(user) -> frozenset[str]:
    """Every role the person holds: their org role (admin for a superuser) and their teams' roles."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if user.is_superuser:
        return frozenset({"admin"})
    if user.org_role:
        return frozenset({user.org_role})
    return frozenset(Membership.objects.filter(user=user).values_list("role", flat=True).distinct())


def nav_items(user) -> list[NavItem]:
    roles = user_roles(user)
    return [item for item in NAV if item.roles is EVERYONE or roles & item.roles]
