"""The main navigation: each page once, offered only to the roles that may use it (SPEC.md, roles).

A page of the dashboard adds its one entry to NAV; base.html draws the entries the signed-in person's
roles allow, in this order. Who is offered what:

- every role: Home, Overview, Guardrails and Alerts (each role sees its teams' allowances and alerts);
- Rules: the roles that change alerting (admin, finops, sre, tech_lead; the rest read rules on Alerts);
- Audit, Import, Quarantine: the roles that change something (all but viewer): the audit log is the
  record of their changes, import and quarantine replay write data;
- Reconciliation, Months (close, reopen, chargeback), Connectors, Invoices and Prices: the
  organisation's roles (admin, finops): billing data.

The team switcher (people who see several teams) and the team named in the heading (people of one
team) come from `nav_context`, which reads the person's memberships once per request
(finops.accounts.selectors.memberships_of, the one door for scoping).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finops.accounts.selectors import memberships_of

EVERYONE = None
ORG_ROLES = frozenset({"admin", "finops"})
WRITERS = frozenset({"admin", "finops", "sre", "tech_lead", "pm", "ml"})  # every role but viewer
GUARDS = frozenset({"admin", "finops", "sre", "tech_lead"})
# pages that read ?team=: the switcher keeps the person on them; elsewhere it opens their home
TEAM_FILTERED = frozenset({"dashboard:home", "dashboard:overview", "dashboard:alerts", "dashboard:audit"})


@dataclass(frozen=True)
class NavItem:
    url_name: str
    label: str
    roles: frozenset[str] | None = EVERYONE  # shown to a person holding any of these roles
    badge: str | None = None  # the name of a live count beside the label (see nav_context)


NAV: list[NavItem] = [
    NavItem("dashboard:home", "Home"),
    NavItem("dashboard:overview", "Overview"),
    NavItem("dashboard:models", "Models"),
    NavItem("dashboard:caching", "Caching"),
    NavItem("dashboard:breakdown", "Breakdown"),
    NavItem("dashboard:forecast", "Forecast"),
    NavItem("dashboard:guardrails", "Guardrails"),
    NavItem("dashboard:alerts", "Alerts", badge="firing"),
    NavItem("dashboard:rules", "Rules", roles=GUARDS),
    NavItem("dashboard:audit", "Audit", roles=WRITERS),
    NavItem("ingest:upload", "Import", roles=WRITERS),
    NavItem("ingest:quarantine", "Quarantine", roles=WRITERS),
    NavItem("dashboard:reconciliation", "Reconciliation", roles=ORG_ROLES),
    NavItem("dashboard:months", "Months", roles=ORG_ROLES),
    NavItem("connectors:status", "Connectors", roles=ORG_ROLES),
    NavItem("ingest:invoices", "Invoices", roles=ORG_ROLES),
    NavItem("dashboard:prices", "Prices", roles=ORG_ROLES),
]


def user_roles(user) -> frozenset[str]:
    """Every role the person holds: their org role (admin for a superuser) and their teams' roles."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if user.is_superuser:
        return frozenset({"admin"})
    if user.org_role:
        return frozenset({user.org_role})
    return frozenset(membership.role for membership in memberships_of(user=user))


def nav_items(user) -> list[NavItem]:
    roles = user_roles(user)
    return [item for item in NAV if item.roles is EVERYONE or roles & item.roles]


@dataclass(frozen=True)
class TeamChoice:
    slug: str
    name: str


@dataclass
class TeamSwitch:
    """What the heading says about teams: the one team of a one-team person, or the switcher's
    choices (with the chosen one) for a person who sees several."""

    only_team: TeamChoice | None = None
    choices: list[TeamChoice] = field(default_factory=list)
    chosen: str = ""  # the ?team= slug, when it is one of the choices
    action: str = ""  # where switching goes: this page when it reads ?team=, else the home
    keep: list[tuple[str, str]] = field(default_factory=list)  # this page's other query parameters


def team_switch(request, *, every_team: list | None = None) -> TeamSwitch:
    """The team part of the heading. `every_team` is the Team list of a person who sees every team
    (admin, finops), read by the caller through Team.objects.restrict; members' teams come from their
    memberships (no further query)."""
    from django.urls import reverse

    user = request.user
    if every_team is not None:
        teams = [TeamChoice(team.slug, team.name) for team in every_team]
    else:
        teams = [TeamChoice(m.team_slug, m.team_name) for m in memberships_of(user=user)]
    if len(teams) == 1 and every_team is None:
        return TeamSwitch(only_team=teams[0])
    if len(teams) < 2:
        return TeamSwitch()
    slug = request.GET.get("team") or ""
    match = getattr(request, "resolver_match", None)
    here = match.view_name if match else ""
    if here in TEAM_FILTERED:
        action = request.path
        keep = [
            (name, value)
            for name, values in request.GET.lists()
            if name not in {"team", "agent", "export", "page"}
            for value in values
        ]
    else:
        action, keep = reverse("dashboard:home"), []
    return TeamSwitch(
        choices=teams,
        chosen=slug if any(team.slug == slug for team in teams) else "",
        action=action,
        keep=keep,
    )
