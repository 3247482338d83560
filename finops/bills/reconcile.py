"""Reconciliation (SPEC.md, "Bills"): a provider's month as finops' telemetry priced it, against what the
provider's statement says, per UTC day, model and token type, with the likely cause of each difference.

One reader (`reconciliation`) answers the API and the page. It reads the daily rollups through
finops.bills.telemetry (never the calls), the statement lines through finops.bills.statements, and the
late events of a closed month from its adjustments: so a month of ten million calls answers from a few
thousand rows.

Decisions the SPEC leaves open, made here:

- **The statement's dollars** are the provider's cost report where one exists for the month
  (`statement_basis: "cost"`), else the usage report priced at finops' own rates on each line's day
  (`"usage_priced"`: the catalog and the organisation's overrides, the batch discount on batch lines,
  the negotiated discount; tiered rates at their base tier, since a bucket's calls' sizes are unknown).
  Where two sources of one kind cover the month (two connectors of one report), the most recently
  pulled one is read, so one report is never counted twice; invoice files are added up.
- **Reasoning tokens** are compared as output: the providers bill and report them as output.
- **Tolerance** (`FINOPS_RECONCILE_TOLERANCE`) is a share of the statement's dollars of the line;
  `variance_percent` is the variance as a share of the telemetry (how much more the bill is than what
  finops saw), in percent.
- **explained_usd / unexplained_usd** add up |variance| of the lines that are not `matched`, split by
  whether finops marked them explained; a line's `cause` is finops' reading of the data, not a mark.
- **A key finops never saw** is read from the data, with no mapping to keep: a line's statement has
  more than telemetry, and the usage of one API key, workspace or project on that line accounts for
  the whole excess (within the tolerance). A key that carries all of the line's traffic cannot, so the
  keys the agents report through are never named.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.conf import settings

from finops.bills.adjustments import late_adjustments_materialise
from finops.bills.matching import model_key
from finops.bills.models import Adjustment, AdjustmentReason, BillMonth, MonthState, ReconciliationLine
from finops.bills.statements import cost_lines, invoice_lines, statement_providers, usage_lines
from finops.bills.telemetry import telemetry_calls_month, telemetry_month, telemetry_providers
from finops.pricing.services import BATCH_DISCOUNT, DEFAULT_BATCH_DISCOUNT, MTOK, PriceBook

ZERO = Decimal(0)
RATE_PLACES = Decimal("1e-6")  # $ per MTok, for comparing and showing rates
STANDARD_TIERS = {"", "standard", "default", "auto", "on_demand"}
# the providers bill reasoning as output and report it so
FOLDED_TOKEN_TYPES = {"reasoning": "output"}
STATEMENT_FIELDS = (
    "source",
    "period_start",
    "model",
    "token_type",
    "line_item",
    "api_key_id",
    "workspace_id",
    "project_id",
    "batch",
    "service_tier",
    "quantity",
    "amount",
    "currency",
    "pulled_at",
)
KEY_DIMENSIONS = (("api_key_id", "API key"), ("workspace_id", "workspace"), ("project_id", "project"))


class LineStatus:
    MATCHED = "matched"
    OVER = "over"  # telemetry above the statement
    UNDER = "under"  # telemetry below the statement
    ONLY_IN_STATEMENT = "only_in_statement"
    ONLY_IN_TELEMETRY = "only_in_telemetry"


class Cause:
    DAY_MISSING = "day_missing_from_pull"
    LATE_TELEMETRY = "late_telemetry"
    UNSEEN_KEY = "unseen_key"
    CACHE_TTL = "cache_ttl"
    BATCH_OR_TIER = "batch_or_tier"
    PRICE_CHANGE = "price_change"
    RATE_DIFFERS = "rate_differs"
    UNPRICED_MODEL = "unpriced_model"
    NON_TOKEN_ITEM = "non_token_item"  # noqa: S105 (a cause, not a password)


CAUSES: dict[str, str] = {
    Cause.DAY_MISSING: "a day missing from the statement's pull",
    Cause.LATE_TELEMETRY: "telemetry that arrived after the month closed",
    Cause.UNSEEN_KEY: "usage from a key, workspace or project finops saw no telemetry from",
    Cause.CACHE_TTL: "cache writes billed at the other TTL",
    Cause.BATCH_OR_TIER: "a batch or service-tier discount on one side only",
    Cause.PRICE_CHANGE: "a price change during the month",
    Cause.RATE_DIFFERS: "the model priced differently from the provider's line",
    Cause.UNPRICED_MODEL: "a model finops has no price for",
    Cause.NON_TOKEN_ITEM: "a charge that is not tokens (tax, credit, tool use)",
}


@dataclass
class Part:
    """One statement line's share of a reconciliation line: the dimensions a cause may point at."""

    api_key_id: str
    workspace_id: str
    project_id: str
    batch: bool
    service_tier: str
    tokens: int | None
    usd: Decimal | None


@dataclass
class Line:
    day: date
    model: str
    token_type: str
    line_item: str = ""
    model_names: set[str] = field(default_factory=set)
    telemetry: bool = False
    telemetry_tokens: int = 0
    telemetry_usd: Decimal = ZERO
    statement: bool = False
    statement_tokens: int | None = 0
    statement_usd: Decimal | None = ZERO
    parts: list[Part] = field(default_factory=list)
    status: str = LineStatus.MATCHED
    cause: str | None = None
    note_of_cause: str = ""
    id: int | None = None
    note: str = ""
    explained: bool = False

    @property
    def key(self) -> tuple[date, str, str, str]:
        return (self.day, self.model, self.token_type, self.line_item)

    @property
    def variance_usd(self) -> Decimal | None:
        if self.statement_usd is None:
            return None
        return self.statement_usd - self.telemetry_usd

    @property
    def variance_tokens(self) -> int | None:
        return None if self.statement_tokens is None else self.statement_tokens - self.telemetry_tokens

    @property
    def telemetry_rate(self) -> Decimal | None:
        return _rate(self.telemetry_usd, self.telemetry_tokens) if self.telemetry else None

    @property
    def statement_rate(self) -> Decimal | None:
        return _rate(self.statement_usd, self.statement_tokens) if self.statement else None


def _rate(usd: Decimal | None, tokens: int | None) -> Decimal | None:
    if usd is None or not tokens:
        return None
    return (usd * MTOK / tokens).quantize(RATE_PLACES)


@dataclass
class Reconciliation:
    provider: str
    month: date
    state: str
    statement_basis: str  # "cost", "usage_priced" or "none"
    statement_source: str | None
    invoice_sources: list[str]
    tolerance: Decimal
    telemetry_usd: Decimal
    statement_usd: Decimal | None
    invoice_usd: Decimal | None
    lines: list[Line]
    skipped_lines: list[str]

    @property
    def variance_usd(self) -> Decimal | None:
        return None if self.statement_usd is None else self.statement_usd - self.telemetry_usd

    @property
    def variance_percent(self) -> Decimal | None:
        if self.variance_usd is None or not self.telemetry_usd:
            return None
        return self.variance_usd * 100 / self.telemetry_usd

    def _unmatched(self) -> list[Line]:
        return [
            line for line in self.lines if line.status != LineStatus.MATCHED and line.variance_usd is not None
        ]

    @property
    def explained_usd(self) -> Decimal:
        return sum((abs(line.variance_usd) for line in self._unmatched() if line.explained), ZERO)

    @property
    def unexplained_usd(self) -> Decimal:
        return sum((abs(line.variance_usd) for line in self._unmatched() if not line.explained), ZERO)

    @property
    def with_cause_usd(self) -> Decimal:
        return sum((abs(line.variance_usd) for line in self._unmatched() if line.cause), ZERO)

    @property
    def without_cause_usd(self) -> Decimal:
        return sum((abs(line.variance_usd) for line in self._unmatched() if not line.cause), ZERO)


def reconciliation(*, provider: str, month: date, tolerance: Decimal | None = None) -> Reconciliation:
    """The provider's month, reconciled. `month` is a bill month's first day (finops.bills.months)."""
    tolerance = settings.FINOPS_RECONCILE_TOLERANCE if tolerance is None else tolerance
    bill_month = BillMonth.objects.filter(month=month).only("state").first()
    closed = bill_month is not None and bill_month.state == MonthState.CLOSED
    if closed:
        late_adjustments_materialise()  # its late events, as they are now (idempotent; cheap if none)
    provider = provider.lower()
    lines: dict[tuple, Line] = {}

    def line_of(day: date, model: str, token_type: str, line_item: str = "") -> Line:
        key = (day, model, token_type, line_item)
        if key not in lines:
            lines[key] = Line(day=day, model=model, token_type=token_type, line_item=line_item)
        return lines[key]

    for cell in telemetry_month(provider=provider, month=month, closed=closed):
        line = line_of(
            cell.day,
            model_key(provider=provider, model=cell.model),
            FOLDED_TOKEN_TYPES.get(cell.token_type, cell.token_type),
        )
        line.model_names.add(cell.model)
        line.telemetry = True
        line.telemetry_tokens += cell.tokens
        line.telemetry_usd += cell.usd

    skipped: list[str] = []
    basis, source, statement_days = _statement_read(
        provider=provider, month=month, line_of=line_of, skipped=skipped
    )
    invoice_usd, invoice_sources = _invoice_read(provider=provider, month=month, skipped=skipped)

    ordered = sorted(lines.values(), key=lambda line: line.key)
    for line in ordered:
        line.status = _status(line, tolerance)
    _causes(
        provider=provider,
        month=month,
        lines=lines,
        statement_days=statement_days,
        tolerance=tolerance,
        closed=closed,
    )
    _identities(provider=provider, month=month, lines=ordered)
    statement_total = None
    if basis != "none":
        statement_total = sum((line.statement_usd or ZERO for line in ordered if line.statement), ZERO)
    return Reconciliation(
        provider=provider,
        month=month,
        state=bill_month.state if bill_month else MonthState.OPEN,
        statement_basis=basis,
        statement_source=source,
        invoice_sources=invoice_sources,
        tolerance=tolerance,
        telemetry_usd=sum((line.telemetry_usd for line in ordered), ZERO),
        statement_usd=statement_total,
        invoice_usd=invoice_usd,
        lines=ordered,
        skipped_lines=skipped,
    )


# --- the statement side ---------------------------------------------------------------------------------


def _latest_source(rows: list[dict]) -> str | None:
    """Of several sources of one kind, the one pulled last (two connectors of one report are one bill)."""
    latest: dict[str, datetime] = {}
    for row in rows:
        latest[row["source"]] = max(row["pulled_at"], latest.get(row["source"], row["pulled_at"]))
    return max(latest, key=lambda source: (latest[source], source)) if latest else None


def _usd_amount(row: dict, skipped: list[str]) -> Decimal | None:
    if row["amount"] is None:
        return None
    if row["currency"] and row["currency"].upper() != "USD":
        skipped.append(
            f"{row['source']} {row['period_start']:%Y-%m-%d} {row['line_item'] or row['model']}: "
            f"amount in {row['currency']}, not USD"
        )
        return None
    return row["amount"]


def _statement_read(
    *, provider: str, month: date, line_of, skipped: list[str]
) -> tuple[str, str | None, set]:
    """Put the statement's tokens and dollars on the lines; answer its basis, its source and its days."""
    cost_rows = list(cost_lines(provider=provider, month=month).values(*STATEMENT_FIELDS))
    usage_rows = list(usage_lines(provider=provider, month=month).values(*STATEMENT_FIELDS))
    cost_source, usage_source = _latest_source(cost_rows), _latest_source(usage_rows)
    cost_rows = [row for row in cost_rows if row["source"] == cost_source]
    usage_rows = [row for row in usage_rows if row["source"] == usage_source]
    # tokens of the usage report per line, for cost lines that carry no quantity (Anthropic's)
    usage_tokens: dict[tuple, int] = defaultdict(int)
    for row in usage_rows:
        if row["token_type"] and row["quantity"] is not None:
            usage_tokens[_line_key(provider, row)] += row["quantity"]

    days: set[date] = set()
    if cost_rows:
        missing_quantity: set[tuple] = set()
        for row in cost_rows:
            amount = _usd_amount(row, skipped)
            if amount is None:
                continue
            line = line_of(*_line_key(provider, row))
            _statement_add(line, row, tokens=row["quantity"], usd=amount)
            if row["quantity"] is None and row["token_type"]:
                missing_quantity.add(line.key)
            days.add(line.day)
        for key in missing_quantity:
            line = line_of(*key)
            line.statement_tokens = usage_tokens.get(key)
        return "cost", cost_source, days
    if usage_rows:
        book = PriceBook.load()
        for row in usage_rows:
            line = line_of(*_line_key(provider, row))
            _statement_add(line, row, tokens=row["quantity"], usd=_usage_priced(book, provider, row))
            days.add(line.day)
        return "usage_priced", usage_source, days
    return "none", None, days


def _line_key(provider: str, row: dict) -> tuple[date, str, str, str]:
    day = row["period_start"].astimezone(UTC).date()
    model = model_key(provider=provider, model=row["model"])
    if row["token_type"]:
        return (day, model, FOLDED_TOKEN_TYPES.get(row["token_type"], row["token_type"]), "")
    return (day, model, "", row["line_item"] or "(no line item)")


def _statement_add(line: Line, row: dict, *, tokens: int | None, usd: Decimal | None) -> None:
    if row["model"]:
        line.model_names.add(row["model"])
    if not line.statement:
        line.statement, line.statement_tokens, line.statement_usd = True, 0, ZERO
    line.statement_tokens = (
        None if tokens is None or line.statement_tokens is None else line.statement_tokens + tokens
    )
    line.statement_usd = None if usd is None or line.statement_usd is None else line.statement_usd + usd
    line.parts.append(
        Part(
            api_key_id=row["api_key_id"],
            workspace_id=row["workspace_id"],
            project_id=row["project_id"],
            batch=row["batch"],
            service_tier=row["service_tier"],
            tokens=tokens,
            usd=usd,
        )
    )


def _usage_priced(book: PriceBook, provider: str, row: dict) -> Decimal | None:
    """A usage line's tokens at finops' rates on its day; None (unknown, never $0) when there are none."""
    if not row["token_type"] or row["quantity"] is None:
        return None
    at = row["period_start"]
    found = book.rates(provider, row["model"], at, 0)
    if found is None:
        return None
    rates, _ = found
    multiplier = Decimal(1)
    if row["batch"]:
        multiplier -= BATCH_DISCOUNT.get(provider, DEFAULT_BATCH_DISCOUNT)
    multiplier *= 1 - book.discount_percent(provider, at) / 100
    return row["quantity"] * rates[row["token_type"]] / MTOK * multiplier


def _invoice_read(*, provider: str, month: date, skipped: list[str]) -> tuple[Decimal | None, list[str]]:
    rows = list(invoice_lines(provider=provider, month=month).values(*STATEMENT_FIELDS))
    amounts = [amount for row in rows if (amount := _usd_amount(row, skipped)) is not None]
    sources = sorted({row["source"] for row in rows})
    return (sum(amounts, ZERO) if amounts else None), sources


# --- status and causes ----------------------------------------------------------------------------------


def _within(difference: Decimal | int, base: Decimal | int, tolerance: Decimal) -> bool:
    return abs(difference) <= tolerance * abs(base)


def _status(line: Line, tolerance: Decimal) -> str:
    if not line.statement:
        return LineStatus.ONLY_IN_TELEMETRY
    if not line.telemetry:
        return LineStatus.ONLY_IN_STATEMENT
    if line.statement_usd is None:  # an unpriced statement line: its tokens say which side is above
        if line.statement_tokens is None or _within(line.variance_tokens, line.statement_tokens, tolerance):
            return LineStatus.MATCHED
        return LineStatus.UNDER if line.variance_tokens > 0 else LineStatus.OVER
    if _within(line.variance_usd, line.statement_usd, tolerance):
        return LineStatus.MATCHED
    return LineStatus.UNDER if line.variance_usd > 0 else LineStatus.OVER


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value.quantize(Decimal('0.000001')):,}"


def _causes(
    *,
    provider: str,
    month: date,
    lines: dict[tuple, Line],
    statement_days: set[date],
    tolerance: Decimal,
    closed: bool | None = None,
) -> None:
    late = _late_events(provider=provider, month=month)
    batch_calls: dict[tuple[date, str], int] = defaultdict(int)
    for (day, model), calls in telemetry_calls_month(provider=provider, month=month, closed=closed).items():
        batch_calls[(day, model_key(provider=provider, model=model))] += calls.batch_calls
    series = _rate_series(lines.values())
    for line in lines.values():
        if line.status == LineStatus.MATCHED:
            continue
        found = (
            _day_missing(line, statement_days)
            or _non_token(line)
            or _late(line, late)
            or _unseen_key(line, tolerance)
            or _cache_ttl(line, lines, tolerance)
            or _unpriced(line)
            or _batch_or_tier(line, batch_calls, tolerance)
            or _price_change(line, series, tolerance)
            or _rate_differs(line, tolerance)
        )
        if found:
            line.cause, line.note_of_cause = found


def _day_missing(line: Line, statement_days: set[date]):
    if line.status == LineStatus.ONLY_IN_TELEMETRY and statement_days and line.day not in statement_days:
        return Cause.DAY_MISSING, f"the statement has no line at all on {line.day}: the pull missed the day"
    return None


def _non_token(line: Line):
    if line.token_type == "" and line.statement:
        return Cause.NON_TOKEN_ITEM, f"{line.line_item}: not tokens, so telemetry has no counterpart"
    return None


def _late_events(*, provider: str, month: date) -> dict[tuple[date, str], Decimal]:
    """A closed month's late events, per day and model: their cost is not in the month's telemetry."""
    late: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    rows = Adjustment.objects.filter(
        month=month, provider=provider, reason=AdjustmentReason.LATE_EVENT
    ).values_list("day", "model", "usd")
    for day, model, usd in rows:
        late[(day, model_key(provider=provider, model=model))] += usd
    return late


def _late(line: Line, late: dict[tuple[date, str], Decimal]):
    usd = late.get((line.day, line.model))
    if usd and line.status in (LineStatus.UNDER, LineStatus.ONLY_IN_STATEMENT):
        return (
            Cause.LATE_TELEMETRY,
            f"calls of {line.day} worth {_money(usd)} arrived after the month closed: they are an "
            "adjustment of the next open month, not in this month's telemetry",
        )
    return None


def _unseen_key(line: Line, tolerance: Decimal):
    if line.status not in (LineStatus.UNDER, LineStatus.ONLY_IN_STATEMENT) or not line.parts:
        return None
    by_tokens = line.variance_tokens is not None and all(part.tokens is not None for part in line.parts)
    excess = line.variance_tokens if by_tokens else line.variance_usd
    if not excess or excess <= 0:
        return None
    for dimension, label in KEY_DIMENSIONS:
        totals: dict[str, Decimal | int] = defaultdict(int)
        for part in line.parts:
            value = getattr(part, dimension)
            if value:
                totals[value] += (part.tokens if by_tokens else part.usd) or 0
        for value, amount in sorted(totals.items()):
            if _within(amount - excess, excess, tolerance):
                unit = f"{amount:,} tokens" if by_tokens else _money(amount)
                return (
                    Cause.UNSEEN_KEY,
                    f"{label} {value} used {unit} here, the statement's whole excess: finops received no "
                    f"telemetry for it (calls the agents did not report)",
                )
    return None


CACHE_TTL_PAIRS = {"cache_write_5m": "cache_write_1h", "cache_write_1h": "cache_write_5m"}


def _cache_ttl(line: Line, lines: dict[tuple, Line], tolerance: Decimal):
    other_type = CACHE_TTL_PAIRS.get(line.token_type)
    if other_type is None or line.variance_tokens is None:
        return None
    other = lines.get((line.day, line.model, other_type, ""))
    if other is None or other.variance_tokens is None or not line.variance_tokens:
        return None
    if _within(line.variance_tokens + other.variance_tokens, line.variance_tokens, tolerance):
        more, fewer = (line, other) if line.variance_tokens > 0 else (other, line)
        return (
            Cause.CACHE_TTL,
            f"the statement has {abs(line.variance_tokens):,} more {more.token_type} and as many fewer "
            f"{fewer.token_type} tokens than telemetry: the cache writes were billed at the other TTL",
        )
    return None


def _unpriced(line: Line):
    if line.statement and line.statement_usd is None:
        return Cause.UNPRICED_MODEL, f"finops has no price for {line.model}: add one to price its statement"
    return None


def _tokens_match(line: Line, tolerance: Decimal) -> bool:
    return (
        line.telemetry
        and line.statement
        and line.statement_tokens is not None
        and line.statement_tokens > 0
        and _within(line.variance_tokens, line.statement_tokens, tolerance)
    )


def _rates_text(line: Line) -> str:
    return (
        f"telemetry {_money(line.telemetry_rate)} per MTok, statement {_money(line.statement_rate)} per MTok"
    )


def _batch_or_tier(line: Line, batch_calls: dict[tuple[date, str], int], tolerance: Decimal):
    if not _tokens_match(line, tolerance):
        return None
    statement_batch = any(part.batch for part in line.parts)
    tiers = sorted({part.service_tier for part in line.parts} - STANDARD_TIERS - {"batch"})
    telemetry_batch = batch_calls.get((line.day, line.model), 0) > 0
    if statement_batch and not telemetry_batch:
        why = "the statement bills batch API usage the agents reported as ordinary calls"
    elif telemetry_batch and not statement_batch:
        why = f"{batch_calls[(line.day, line.model)]:,} calls were reported as batch, the statement has no batch line"
    elif tiers:
        why = f"the statement bills service tier {', '.join(tiers)}, which telemetry does not price"
    else:
        return None
    return Cause.BATCH_OR_TIER, f"{why} ({_rates_text(line)})"


def _rate_series(lines) -> dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]]:
    """Per model and token type, the days with both rates known: (day, telemetry rate, statement rate)."""
    series: dict[tuple[str, str], list] = defaultdict(list)
    for line in lines:
        if line.telemetry_rate is not None and line.statement_rate is not None:
            series[(line.model, line.token_type)].append((line.day, line.telemetry_rate, line.statement_rate))
    for days in series.values():
        days.sort()
    return series


def _price_change(line: Line, series, tolerance: Decimal):
    """One side's rate per MTok moved on a day of the month while the other side's stayed."""
    if not _tokens_match(line, tolerance):
        return None
    days = series.get((line.model, line.token_type), [])
    if len(days) < 2 or days[0][0] >= line.day:
        return None
    first = days[0]
    now = next(entry for entry in days if entry[0] == line.day)
    for side, index, other in (("statement", 2, 1), ("telemetry", 1, 2)):
        if now[index] != first[index] and _within(now[other] - first[other], first[other], tolerance):
            changed_on = next(entry[0] for entry in days if entry[index] != first[index])
            return (
                Cause.PRICE_CHANGE,
                f"the {side}'s rate of {line.model} {line.token_type} changed from {_money(first[index])} "
                f"to {_money(now[index])} per MTok on {changed_on}; the other side's stayed at "
                f"{_money(now[other])}",
            )
    return None


def _rate_differs(line: Line, tolerance: Decimal):
    if not _tokens_match(line, tolerance):
        return None
    return (
        Cause.RATE_DIFFERS,
        f"same tokens, different price: {_rates_text(line)} (check the model's price or override)",
    )


# --- identities and notes -------------------------------------------------------------------------------


def _identities(*, provider: str, month: date, lines: list[Line]) -> None:
    """Give each line its stable id and finops' note, making the rows of lines shown for the first time."""
    fields = ("id", "day", "model", "token_type", "line_item", "note", "explained")

    def read() -> dict[tuple, dict]:
        rows = ReconciliationLine.objects.filter(provider=provider, month=month).values(*fields)
        return {(row["day"], row["model"], row["token_type"], row["line_item"]): row for row in rows}

    known = read()
    missing = [line for line in lines if line.key not in known]
    if missing:
        ReconciliationLine.objects.bulk_create(
            [
                ReconciliationLine(
                    provider=provider,
                    month=month,
                    day=line.day,
                    model=line.model,
                    token_type=line.token_type,
                    line_item=line.line_item,
                )
                for line in missing
            ],
            ignore_conflicts=True,  # a concurrent first reconciliation of the month made them too
        )
        known = read()
    for line in lines:
        row = known[line.key]
        line.id, line.note, line.explained = row["id"], row["note"], row["explained"]


def reconciliation_providers(*, month: date) -> list[str]:
    """The providers a month can be reconciled for: those with telemetry or a statement in it."""
    return sorted(telemetry_providers(month=month) | statement_providers(month=month))
