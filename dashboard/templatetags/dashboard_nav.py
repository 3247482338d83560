"""The navigation's live figure: how many alerts the signed-in person may see are firing now."""

from django import template

from finops.alerts.models import Alert, AlertState

register = template.Library()


@register.simple_tag(takes_context=True)
def firing_alerts_count(context) -> int:
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return 0
    return Alert.objects.restrict(user, "view").filter(state=AlertState.FIRING).count()
