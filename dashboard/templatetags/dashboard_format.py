from django import template

from dashboard import formatting

register = template.Library()

register.filter("usd", formatting.usd)
register.filter("usd_exact", formatting.usd_exact)
register.filter("percent", formatting.percent)
register.filter("ratio", formatting.ratio)
register.filter("count", formatting.count)
register.filter("duration_text", formatting.duration_text)
register.filter("number", formatting.number)


@register.filter
def alert_value(alert) -> str:
    """An alert's value in its rule's unit (formatting.alert_figure)."""
    return formatting.alert_figure_of(alert, alert.value)


@register.filter
def alert_threshold(alert) -> str:
    return formatting.alert_figure_of(alert, alert.threshold)


@register.simple_tag(takes_context=True)
def export_query(context, table_name: str) -> str:
    """This page's query string asking for one of its tables as CSV (dashboard.tables.render_page)."""
    query = context["request"].GET.copy()
    query["export"] = table_name
    return query.urlencode()
