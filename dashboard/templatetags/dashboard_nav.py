"""The navigation: the entries the signed-in person's roles allow, and its live figures."""

from django import template

from dashboard.navigation import nav_items
from finops.alerts.models import Alert, AlertState

register = template.Library()


@register.simple_tag(takes_context=True)
def main_nav(context) -> list:
    user = getattr(context.get("request"), "user", None)
    return [] if user is None else nav_items(user)


@register.simple_tag(takes_context=True)
def firing_alerts_count(context) -> int:
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return 0
    return Alert.objects.restrict(user, "view").filter(state=AlertState.FIRING).count()
