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
