"""The navigation: the entries the signed-in person's roles allow, its live figures and the team
switcher, read once per page (the memberships behind them once per request: memberships_of)."""

from django import template

from dashboard.navigation import nav_items, team_switch
from finops.accounts.models import Team
from finops.alerts.models import Alert, AlertState

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_context(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"items": [], "firing": 0, "teams": None}
    every_team = list(Team.objects.restrict(user)) if user.sees_every_team else None
    return {
        "items": nav_items(user),
        "firing": Alert.objects.restrict(user, "view").filter(state=AlertState.FIRING).count(),
        "teams": team_switch(request, every_team=every_team),
    }
