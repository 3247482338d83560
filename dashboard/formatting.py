"""Numbers as people read them. Money stays Decimal all the way to the text (never through float)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
HUNDREDTH_CENT = Decimal("0.0001")
MICRO = Decimal("0.000001")


def usd(value: Decimal | None) -> str:
    """$1,234.56 for a dollar and up; more places below, so a $0.0042 task never reads as $0.00."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude == 0:
        text = "0.00"
    elif magnitude >= 1:
        text = f"{magnitude.quantize(CENT, ROUND_HALF_EVEN):,.2f}"
    elif magnitude >= CENT:
        text = f"{magnitude.quantize(HUNDREDTH_CENT, ROUND_HALF_EVEN):.4f}"
    elif magnitude >= MICRO:
        text = f"{magnitude.quantize(MICRO, ROUND_HALF_EVEN):.6f}"
    else:
        return "< $0.000001" if value > 0 else "> -$0.000001"
    return f"-${text}" if value < 0 else f"${text}"


def usd_exact(value: Decimal | None) -> str:
    """The API's precision (1e-6 USD), for tooltips and tables a person may reconcile against."""
    if value is None:
        return "—"
    return f"${value.quantize(MICRO, ROUND_HALF_EVEN):,.6f}"


def percent(rate: float | None, places: int = 1) -> str:
    return "—" if rate is None else f"{rate * 100:.{places}f}%"


def ratio(value: float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def usd_places(values: list[Decimal | None]) -> Decimal:
    """One precision for a whole table column, so digits line up: the places the smallest
    non-zero amount needs (2 from a dollar up, 4 from a cent, else 6)."""
    nonzero = [abs(value) for value in values if value]
    smallest = min(nonzero, default=Decimal(1))
    return CENT if smallest >= 1 else HUNDREDTH_CENT if smallest >= CENT else MICRO


def usd_at(value: Decimal | None, places: Decimal) -> str:
    return "—" if value is None else f"${value.quantize(places, ROUND_HALF_EVEN):,}"


def usd_column(values: list[Decimal]) -> list[str]:
    places = usd_places(values)
    return [usd_at(value, places) for value in values]


def duration_text(delta) -> str:
    """A time to go, as an sre reads it on call: 3 h 12 min, 5 d 4 h, 40 s."""
    seconds = max(0, int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def number(value: Decimal | None) -> str:
    """A rule's value or an alert's figure as stored, without trailing zeros: 100, 0.25, 1,234.5."""
    if value is None:
        return "—"
    text = format(value.normalize(), ",f")
    return text


# how a threshold rule's metric reads (finops.alerts.services.THRESHOLD_METRICS); the rest are counts
_RATE_METRICS = {"cache_hit_rate"}
_RATIO_METRICS = {"token_efficiency_index", "step_inflation_ratio"}


def alert_figure(value: Decimal | None, *, kind: str, metric: str | None) -> str:
    """An alert's value or threshold in its rule's unit: dollars, tokens, percentage points of hit rate
    (cache_collapse: a drop), the share of an allowance used, a ratio; as stored when unknown."""
    if value is None:
        return "—"
    if kind == "cache_collapse":
        return f"{value * 100:.1f} points"
    if kind == "allowance":
        return percent(float(value), 0)
    if kind in ("forecast", "anomaly") or (metric or "").endswith("usd"):
        return usd(value)
    if metric in _RATE_METRICS:
        return percent(float(value))
    if metric in _RATIO_METRICS:
        return ratio(float(value))
    if metric and value == value.to_integral_value():
        return count(int(value))  # tokens, calls, tasks, steps
    return number(value)


def alert_figure_of(alert, value: Decimal | None) -> str:
    """`value` (the alert's value or threshold) in the unit of the alert's rule."""
    return alert_figure(value, kind=alert.rule.kind, metric=alert.rule.metric)
